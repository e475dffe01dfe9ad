//! The edge against real origins and real clients: TLS and SNI, HTTP/2, routing, rules,
//! affinity, retries, failover under load, limits, WebSocket, protocol edge cases, reload and
//! graceful shutdown.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn one_group(name: &str, origins: &[&Origin], extra: &str) -> String {
    let mut s = format!("[edge.groups.{name}]\n{extra}\n");
    for o in origins {
        s.push_str(&format!(
            "[[edge.groups.{name}.origins]]\nname = \"{}\"\naddress = \"{}\"\n",
            o.name, o.addr
        ));
    }
    s
}

const APP: &[(&str, &[&str])] = &[("app", &["app.example.com", "*.example.com"])];

#[tokio::test]
async fn https_h2_and_http1_reach_the_origin_with_forwarding_headers() {
    let a = Origin::start("a").await;
    let edge = TestEdge::start(
        &format!(
            "[edge.routes.app]\ndomains = [\"app.example.com\"]\ngroup = \"web\"\n{}",
            one_group("web", &[&a], "")
        ),
        APP,
    )
    .await;
    let c = edge.client(&["app.example.com"]);
    let r = c
        .get(edge.url("app.example.com", "/hello?x=1"))
        .header("connection", "x-private")
        .header("x-private", "secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(rid.len(), 32);
    let j = json(r).await;
    assert_eq!(j["origin"], "a");
    assert_eq!(j["uri"], "/hello?x=1");
    assert_eq!(
        j["version"], "HTTP/1.1",
        "origins are spoken to in HTTP/1.1"
    );
    let host = format!("app.example.com:{}", edge.https.port());
    assert_eq!(
        header(&j, "host"),
        Some(host.as_str()),
        "HTTP/2's :authority becomes the Host, as an HTTP/1.1 client would send it"
    );
    assert_eq!(header(&j, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&j, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&j, "x-forwarded-host"), Some("app.example.com"));
    assert_eq!(
        header(&j, "forwarded"),
        Some("for=127.0.0.1;host=app.example.com;proto=https")
    );
    assert_eq!(header(&j, "x-request-id"), Some(rid.as_str()));

    let c1 = edge
        .client_builder(&["app.example.com"])
        .http1_only()
        .build()
        .unwrap();
    let r = c1
        .get(edge.url("app.example.com", "/"))
        .header("connection", "x-private")
        .header("x-private", "secret")
        .header("x-forwarded-proto", "ftp")
        .header("x-forwarded-host", "evil.test")
        .header("x-request-id", "chosen-by-the-client")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let j = json(r).await;
    assert_eq!(
        header(&j, "x-private"),
        None,
        "Connection-named headers are hop-by-hop"
    );
    // The edge's own values replace what the client sent, once each, and Host comes first.
    let fields = j["headers"].as_array().expect("headers");
    let count = |name: &str| fields.iter().filter(|h| h[0] == name).count();
    for name in [
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-request-id",
    ] {
        assert_eq!(count(name), 1, "{name} in {fields:?}");
    }
    assert_eq!(fields[0][0], "host");
    assert_eq!(header(&j, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&j, "x-forwarded-host"), Some("app.example.com"));
    assert_eq!(header(&j, "x-request-id"), Some(rid.as_str()));
    assert_ne!(rid, "chosen-by-the-client");
    edge.stop().await;
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_default() {
    let a = Origin::start("a").await;
    let edge = TestEdge::start(
        &format!(
            "[edge.routes.app]\ndomains = [\"*\"]\ngroup = \"web\"\n{}",
            one_group("web", &[&a], "")
        ),
        &[
            ("default", &["default.test"]),
            ("exact", &["app.example.com"]),
            ("wild", &["*.example.com"]),
        ],
    )
    .await;
    let pki = &edge.pki;
    let der_of = |file: &str| {
        let pem = std::fs::read(pki.dir.path().join(format!("{file}.crt"))).unwrap();
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(&pem)
            .unwrap()
            .to_vec()
    };
    let served = |name: &'static str| {
        let addr = edge.https;
        let ca = pki.ca_pem.clone();
        async move {
            use rustls_pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
                .unwrap();
            let mut cfg = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            // Accept any name: this test looks at which certificate is served.
            cfg.dangerous().set_certificate_verifier(Arc::new(AnyCert));
            let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let sn = rustls_pki_types::ServerName::try_from(name).unwrap();
            let tls = conn.connect(sn, tcp).await.unwrap();
            let (_, s) = tls.get_ref();
            assert!(matches!(
                s.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3) | Some(rustls::ProtocolVersion::TLSv1_2)
            ));
            s.peer_certificates().unwrap()[0].to_vec()
        }
    };
    assert_eq!(served("app.example.com").await, der_of("exact"));
    assert_eq!(served("api.example.com").await, der_of("wild"));
    assert_eq!(
        served("a.b.example.com").await,
        der_of("default"),
        "a wildcard covers one label"
    );
    assert_eq!(served("unknown.org").await, der_of("default"));
    assert_eq!(
        served("127.0.0.1").await,
        der_of("default"),
        "no SNI for IPs"
    );

    // A real client verifies the chain for a wildcard name.
    let c = edge.client(&["api.example.com"]);
    let r = c
        .get(edge.url("api.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    edge.stop().await;
}

#[tokio::test]
async fn certificates_reload_without_restart() {
    let a = Origin::start("a").await;
    let edge = TestEdge::start(
        &format!(
            "[edge.routes.app]\ndomains = [\"*\"]\ngroup = \"web\"\n{}",
            one_group("web", &[&a], "")
        ),
        &[("app", &["app.example.com"])],
    )
    .await;
    let c = edge.client(&["app.example.com", "new.example.com"]);
    // Keep one connection open across the reload.
    let r = c
        .get(edge.url("app.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        c.get(edge.url("new.example.com", "/"))
            .send()
            .await
            .is_err(),
        "the old certificate does not cover new.example.com"
    );
    // Replace the files in place (same paths) with a certificate for both names.
    edge.pki
        .issue("app", &["app.example.com", "new.example.com"]);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fresh = edge.client(&["new.example.com"]);
        if let Ok(r) = fresh.get(edge.url("new.example.com", "/")).send().await {
            assert_eq!(r.status(), 200);
            ok = true;
            break;
        }
    }
    assert!(ok, "the new certificate was never served");
    let r = c
        .get(edge.url("app.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "connections survive the reload");
    edge.stop().await;
}

#[tokio::test]
async fn routing_precedence() {
    let (o_any, o_wild, o_app, o_api, o_login, o_post) = (
        Origin::start("any").await,
        Origin::start("wild").await,
        Origin::start("app").await,
        Origin::start("api").await,
        Origin::start("login").await,
        Origin::start("post").await,
    );
    let mut t = String::new();
    for (route, domains, paths, methods, g) in [
        ("any", "\"*\"", "\"/*\"", "", "g_any"),
        ("wild", "\"*.example.com\"", "\"/*\"", "", "g_wild"),
        ("app", "\"app.example.com\"", "\"/*\"", "", "g_app"),
        ("api", "\"app.example.com\"", "\"/api/*\"", "", "g_api"),
        ("login", "\"app.example.com\"", "\"/login\"", "", "g_login"),
        (
            "post",
            "\"app.example.com\"",
            "\"/api/*\"",
            "\"POST\"",
            "g_post",
        ),
    ] {
        t.push_str(&format!(
            "[edge.routes.{route}]\ndomains = [{domains}]\npaths = [{paths}]\nmethods = [{methods}]\ngroup = \"{g}\"\n"
        ));
    }
    for (g, o) in [
        ("g_any", &o_any),
        ("g_wild", &o_wild),
        ("g_app", &o_app),
        ("g_api", &o_api),
        ("g_login", &o_login),
        ("g_post", &o_post),
    ] {
        t.push_str(&one_group(g, &[o], ""));
    }
    let edge = TestEdge::start(
        &t,
        &[("all", &["app.example.com", "*.example.com", "other.org"])],
    )
    .await;
    let c = edge.client(&["app.example.com", "b.example.com", "other.org"]);
    let who = |host: &'static str, path: &'static str, post: bool| {
        let c = c.clone();
        let url = edge.url(host, path);
        async move {
            let rb = if post { c.post(url) } else { c.get(url) };
            let r = rb.send().await.unwrap();
            r.headers()["x-origin"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(who("app.example.com", "/", false).await, "app");
    assert_eq!(who("app.example.com", "/api/x", false).await, "api");
    assert_eq!(who("app.example.com", "/api/x", true).await, "post");
    assert_eq!(who("app.example.com", "/login", false).await, "login");
    assert_eq!(who("app.example.com", "/login/more", false).await, "app");
    assert_eq!(who("b.example.com", "/api/x", false).await, "wild");
    assert_eq!(who("other.org", "/", false).await, "any");
    edge.stop().await;
}

#[tokio::test]
async fn plain_http_redirects_serves_or_refuses_per_route_and_hsts() {
    let a = Origin::start("a").await;
    let t = format!(
        "hsts = {{ max_age = \"365d\", include_subdomains = true }}\n\
         [edge.routes.secure]\ndomains = [\"app.example.com\"]\ngroup = \"web\"\n\
         [edge.routes.open]\ndomains = [\"open.example.com\"]\ngroup = \"web\"\nhttp = \"serve\"\nhsts = false\n\
         [edge.routes.closed]\ndomains = [\"closed.example.com\"]\ngroup = \"web\"\nhttp = \"reject\"\n{}",
        one_group("web", &[&a], "")
    );
    let edge = TestEdge::start(&t, APP).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("app.example.com", edge.http)
        .resolve("open.example.com", edge.http)
        .resolve("closed.example.com", edge.http)
        .build()
        .unwrap();
    let r = c
        .get(edge.http_url("app.example.com", "/a?b=c"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://app.example.com:{}/a?b=c", edge.https.port()).as_str()
    );
    let r = c
        .get(edge.http_url("open.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("strict-transport-security").is_none());
    let r = c
        .get(edge.http_url("closed.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let s = edge.client(&["app.example.com", "open.example.com"]);
    let r = s
        .get(edge.url("app.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let r = s
        .get(edge.url("open.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("strict-transport-security").is_none());
    edge.stop().await;
}

#[tokio::test]
async fn every_rule_action() {
    let (main, beta) = (Origin::start("main").await, Origin::start("beta").await);
    let t = format!(
        r#"
[edge.routes.app]
domains = ["app.example.com"]
group = "main"

[[edge.rules]]
name = "beta-users"
conditions = [{{ field = "cookie", name = "beta", op = "equals", value = "1" }}]
actions = [
  {{ action = "origin_group", group = "beta" }},
  {{ action = "response_header", op = "set", name = "x-served-by", value = "beta" }},
  {{ action = "stop" }},
]

[[edge.rules]]
name = "old-api"
conditions = [{{ field = "path", op = "prefix", value = "/v1/" }}]
actions = [{{ action = "rewrite", pattern = "^/v1/(.*)$", to = "/v2/$1" }}]

[[edge.rules]]
name = "moved"
conditions = [{{ field = "path", op = "regex", value = "^/items/\\d+$" }}]
actions = [{{ action = "redirect", status = 301, pattern = "^/items/(\\d+)$", location = "https://{{host}}/products/$1?{{query}}" }}]

[[edge.rules]]
name = "headers"
match = "any"
conditions = [
  {{ field = "header", name = "x-debug", op = "exists" }},
  {{ field = "query", name = "debug", op = "equals", value = "on" }},
]
actions = [
  {{ action = "request_header", op = "set", name = "x-debug-mode", value = "yes" }},
  {{ action = "request_header", op = "delete", name = "x-debug" }},
  {{ action = "response_header", op = "append", name = "x-debugged", value = "1" }},
]

[[edge.rules]]
name = "not-internal"
conditions = [{{ field = "client_ip", op = "in", value = ["10.0.0.0/8"], negate = true }}, {{ field = "method", value = ["GET", "HEAD"] }}, {{ field = "scheme", value = "https" }}, {{ field = "host", op = "suffix", value = ".example.com" }}]
actions = [{{ action = "request_header", op = "append", name = "x-external", value = "1" }}]

{}
{}"#,
        one_group("main", &[&main], ""),
        one_group("beta", &[&beta], "")
    );
    let edge = TestEdge::start(&t, APP).await;
    let c = edge.client(&["app.example.com"]);
    // origin group override + response header + stop (the rewrite would apply otherwise)
    let r = c
        .get(edge.url("app.example.com", "/v1/x"))
        .header("cookie", "beta=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-served-by"], "beta");
    let j = json(r).await;
    assert_eq!(j["origin"], "beta");
    assert_eq!(j["uri"], "/v1/x", "stop ended the rules before the rewrite");
    // rewrite with captures, query kept
    let j = json(
        c.get(edge.url("app.example.com", "/v1/users/7?q=1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(j["origin"], "main");
    assert_eq!(j["uri"], "/v2/users/7?q=1");
    assert_eq!(header(&j, "x-external"), Some("1"));
    // redirect with captures and placeholders
    let r = c
        .get(edge.url("app.example.com", "/items/42?ref=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        "https://app.example.com/products/42?ref=x"
    );
    // header set/delete/append, `any` matching on a query parameter
    let r = c
        .get(edge.url("app.example.com", "/x?debug=on"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-debugged"], "1");
    let j = json(r).await;
    assert_eq!(header(&j, "x-debug-mode"), Some("yes"));
    let j = json(
        c.get(edge.url("app.example.com", "/x"))
            .header("x-debug", "1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(header(&j, "x-debug-mode"), Some("yes"));
    assert_eq!(header(&j, "x-debug"), None);
    edge.stop().await;
}

#[tokio::test]
async fn retries_idempotent_requests_and_unsent_bodies_only() {
    let (bad, good) = (Origin::start("bad").await, Origin::start("good").await);
    let dead = Origin::start("dead").await;
    dead.kill();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = format!(
        r#"
[edge.routes.app]
domains = ["app.example.com"]
group = "flaky"
[edge.routes.dead]
domains = ["dead.example.com"]
group = "deadfirst"

[edge.groups.flaky]
passive = {{ enabled = false }}
[[edge.groups.flaky.origins]]
name = "bad"
address = "{}"
priority = 1
[[edge.groups.flaky.origins]]
name = "good"
address = "{}"
priority = 2

[edge.groups.deadfirst]
[[edge.groups.deadfirst.origins]]
name = "dead"
address = "{}"
priority = 1
[[edge.groups.deadfirst.origins]]
name = "good"
address = "{}"
priority = 2
"#,
        bad.addr, good.addr, dead.addr, good.addr
    );
    let edge = TestEdge::start(&t, APP).await;
    let c = edge.client(&["app.example.com", "dead.example.com"]);
    // A 503 on GET is retried on the next origin.
    let r = c
        .get(edge.url("app.example.com", "/status/503"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        503,
        "the good origin also answers /status/503 with 503"
    );
    assert_eq!(r.headers()["x-origin"], "good", "…but it was retried there");
    // A POST whose body was sent is not retried after a 503.
    let r = c
        .post(edge.url("app.example.com", "/status/503"))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-origin"], "bad");
    // A POST to an origin that refuses connections was never sent: retried.
    let r = c
        .post(edge.url("dead.example.com", "/echo"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j = json(r).await;
    assert_eq!(j["origin"], "good");
    assert_eq!(j["body_len"], 5);
    // PUT with a body is idempotent and buffered: retried too.
    let r = c
        .put(edge.url("dead.example.com", "/echo"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["body_len"], 1000);
    let st = edge.edge.status();
    let g = st.groups.iter().find(|g| g.name == "deadfirst").unwrap();
    assert!(g.origins[0].failures >= 2, "{g:?}");
    let m = edge.metrics_text();
    assert!(
        m.contains("tandem_edge_retries_total{group=\"flaky\"} 1"),
        "{m}"
    );
    assert!(m.contains("outcome=\"connect_error\""), "{m}");
    edge.stop().await;
}

#[tokio::test]
async fn affinity_pins_and_moves_when_the_origin_fails() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let edge = TestEdge::start(
        &format!(
            "[edge.routes.app]\ndomains = [\"app.example.com\"]\ngroup = \"web\"\n{}",
            one_group(
                "web",
                &[&a, &b],
                "affinity = { cookie = \"aff\", ttl = \"1h\" }\npassive = { failures = 1, eject_for = \"30s\" }"
            )
        ),
        APP,
    )
    .await;
    let c = edge.client(&["app.example.com"]);
    let r = c
        .get(edge.url("app.example.com", "/"))
        .send()
        .await
        .unwrap();
    let first = r.headers()["x-origin"].to_str().unwrap().to_string();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("aff="), "{cookie}");
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("Max-Age=3600")
    );
    let token = cookie.split(';').next().unwrap().to_string();
    for _ in 0..10 {
        let r = c
            .get(edge.url("app.example.com", "/"))
            .header("cookie", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-origin"], first.as_str(), "pinned");
        assert!(
            r.headers().get("set-cookie").is_none(),
            "no re-issue while pinned"
        );
    }
    // Kill the pinned origin: the request moves and the cookie is re-issued.
    if first == "a" {
        a.kill()
    } else {
        b.kill()
    }
    let r = c
        .get(edge.url("app.example.com", "/"))
        .header("cookie", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let moved = r.headers()["x-origin"].to_str().unwrap().to_string();
    assert_ne!(moved, first);
    let new_cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert_ne!(new_cookie.split(';').next().unwrap(), token);
    // The old cookie now lands on the survivor directly (its origin is ejected).
    let r = c
        .get(edge.url("app.example.com", "/"))
        .header("cookie", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-origin"], moved.as_str());
    edge.stop().await;
}

/// Kill every origin of the preferred region while a load runs: no idempotent request fails.
#[tokio::test]
async fn failover_under_load_loses_no_idempotent_request() {
    let east1 = Origin::start("east1").await;
    let east2 = Origin::start("east2").await;
    let west = Origin::start("west").await;
    let t = format!(
        r#"
[monitors.app]
protocol = "http"
path = "/health"
interval = "200ms"
timeout = "150ms"
tolerated_failures = 1
[edge.routes.app]
domains = ["app.example.com"]
group = "app"
[edge.groups.app]
monitor = "app"
local_first = true
[[edge.groups.app.origins]]
name = "east1"
address = "{}"
region = "eastus"
[[edge.groups.app.origins]]
name = "east2"
address = "{}"
region = "eastus"
[[edge.groups.app.origins]]
name = "west"
address = "{}"
region = "westus"
"#,
        east1.addr, east2.addr, west.addr
    );
    let edge = TestEdge::start(&t, APP).await;
    let c = edge
        .client_builder(&["app.example.com"])
        .http1_only()
        .build()
        .unwrap();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut workers = Vec::new();
    for i in 0..16 {
        let (c, ok, failed, stop) = (c.clone(), ok.clone(), failed.clone(), stop.clone());
        let url = edge.url("app.example.com", if i % 2 == 0 { "/slow/20" } else { "/" });
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() && n < 5000 {
                n += 1;
                match c.get(&url).send().await {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.bytes().await;
                        if status == 200 && body.is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            eprintln!("failed: {status} {body:?}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before_west = west.hits();
    assert!(east1.hits() + east2.hits() > 50, "east serves first");
    east1.kill();
    east2.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "failover: {ok} ok, {failed} failed, west served {}",
        west.hits() - before_west
    );
    assert_eq!(failed, 0, "idempotent requests failed during failover");
    assert!(west.hits() - before_west > 50, "west took over");
    let st = edge.edge.status();
    let g = &st.groups[0];
    assert!(
        !g.origins[0].healthy && !g.origins[1].healthy && g.origins[2].healthy,
        "{g:?}"
    );
    edge.stop().await;
}

#[tokio::test]
async fn limits_answer_431_and_413() {
    let a = Origin::start("a").await;
    let t = format!(
        "limits = {{ max_header_bytes = \"4KiB\", max_body_bytes = 1000 }}\n\
         [edge.routes.app]\ndomains = [\"*\"]\ngroup = \"web\"\nhttp = \"serve\"\n{}",
        one_group("web", &[&a], "")
    );
    let edge = TestEdge::start(&t, APP).await;
    let c = edge.client(&["app.example.com"]);
    let r = c
        .get(edge.url("app.example.com", "/"))
        .header("x-big", "a".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let r = c
        .post(edge.url("app.example.com", "/"))
        .body(vec![0u8; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // A chunked body that grows past the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![1u8; 300])).collect();
    let r = c
        .post(edge.url("app.example.com", "/"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Under the limit is fine, and bodies stream through.
    let r = c
        .post(edge.url("app.example.com", "/"))
        .body(vec![0u8; 999])
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["body_len"], 999);
    let r = c
        .get(edge.url("app.example.com", "/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "chunk0;chunk1;chunk2;chunk3;chunk4;"
    );
    edge.stop().await;
}

#[tokio::test]
async fn websocket_upgrade_is_passed_through() {
    let a = Origin::start("a").await;
    let t = format!(
        "timeouts = {{ drain = \"300ms\" }}\n\
         [edge.routes.app]\ndomains = [\"*\"]\ngroup = \"web\"\nhttp = \"serve\"\n{}",
        one_group("web", &[&a], "")
    );
    let edge = TestEdge::start(&t, APP).await;
    let mut s = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"ping"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, msg);
    }
    // Stopping the edge closes the open WebSocket once the drain timeout has passed.
    let started = std::time::Instant::now();
    edge.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "an upgraded connection held the shutdown for {:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await;
    assert!(
        r.is_ok(),
        "the upgraded connection stayed open after the edge stopped"
    );
}

#[tokio::test]
async fn protocol_edge_cases_get_clear_4xx_and_no_crash() {
    let a = Origin::start("a").await;
    let t = format!(
        "timeouts = {{ client_header = \"500ms\" }}\nlimits = {{ max_header_bytes = \"8KiB\" }}\n\
         [edge.routes.app]\ndomains = [\"*\"]\ngroup = \"web\"\nhttp = \"serve\"\n{}",
        one_group("web", &[&a], "")
    );
    let edge = TestEdge::start(&t, APP).await;
    let w = Duration::from_secs(3);
    let status = |s: &str| s.split(' ').nth(1).unwrap_or("").to_string();
    // Garbage request line.
    let r = raw(edge.http, b"HELLO\r\n\r\n", w).await;
    assert_eq!(status(&r), "400", "{r}");
    // Content-Length and Transfer-Encoding together (CL.TE smuggling): refused with a 400,
    // as nginx does, and the request hidden behind it never runs.
    let before = a.hits();
    let r = raw(
        edge.http,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
        w,
    )
    .await;
    assert_eq!(status(&r), "400", "{r}");
    assert!(!r.contains("/admin"), "the smuggled request ran: {r}");
    assert_eq!(a.hits(), before, "the origin saw the request: {r}");
    // Two different Content-Length values.
    let r = raw(
        edge.http,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        w,
    )
    .await;
    assert_eq!(status(&r), "400", "{r}");
    // Obsolete line folding.
    let r = raw(
        edge.http,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        w,
    )
    .await;
    assert_eq!(status(&r), "400", "{r}");
    // A transfer coding the edge does not forward.
    let r = raw(
        edge.http,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        w,
    )
    .await;
    assert_eq!(status(&r), "400", "{r}");
    // Oversized headers.
    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..200 {
        big.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(60)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let r = raw(edge.http, &big, w).await;
    assert_eq!(status(&r), "431", "{r}");
    // No Host.
    let r = raw(edge.http, b"GET / HTTP/1.0\r\n\r\n", w).await;
    assert_eq!(status(&r), "400", "{r}");
    // Sends bytes that never complete a request; the answer and how long the edge took to
    // give it and close (the head deadline is 500 ms here; 5 s is the test's own bound).
    let stalled = |bytes: &'static [u8]| async move {
        let started = std::time::Instant::now();
        let r = raw(edge.http, bytes, Duration::from_secs(5)).await;
        (r, started.elapsed())
    };
    // A slow client that never finishes its headers is cut off.
    let (r, took) = stalled(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow:").await;
    assert!(
        took < Duration::from_secs(4),
        "slow client held the connection"
    );
    assert_eq!(status(&r), "408", "{r}");
    assert!(r.to_ascii_lowercase().contains("connection: close"), "{r}");
    // So is one that never finishes a small body (the own server reads those whole).
    let (r, took) = stalled(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc").await;
    assert!(
        took < Duration::from_secs(4),
        "slow body held the connection"
    );
    assert_eq!(status(&r), "408", "{r}");
    // A plain connection that opened with the HTTP/2 preface and sent no request is closed
    // without an HTTP/1 answer.
    let (r, took) = stalled(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(
        took < Duration::from_secs(4),
        "preface-only connection held"
    );
    assert!(!r.contains("HTTP/1.1"), "{r}");
    // The same over TLS (the 408 goes out as a TLS record, then close_notify).
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    cfg.dangerous().set_certificate_verifier(Arc::new(AnyCert));
    let tcp = tokio::net::TcpStream::connect(edge.https).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("app.example.com").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow:")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    let r = String::from_utf8_lossy(&out);
    assert_eq!(status(&r), "408", "{r}");
    // A TLS client that stalls mid-handshake is cut off too.
    let started = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(edge.https).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut buf = [0u8; 16];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    // Still serving.
    let r = raw(
        edge.http,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        w,
    )
    .await;
    assert_eq!(status(&r), "200", "{r}");
    edge.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let a = Origin::start("a").await;
    let t = format!(
        "[edge.routes.app]\ndomains = [\"*\"]\ngroup = \"web\"\nhttp = \"serve\"\n{}",
        one_group("web", &[&a], "")
    );
    let edge = TestEdge::start(&t, APP).await;
    let c = edge.client(&["app.example.com"]);
    let url = edge.url("app.example.com", "/slow/600");
    let inflight = tokio::spawn(async move { c.get(url).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let https = edge.https;
    edge.cancel.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(https).await.is_err(),
        "no new connections after shutdown starts"
    );
    assert_eq!(
        inflight.await.unwrap().unwrap(),
        200,
        "the in-flight request finished"
    );
    tokio::time::timeout(Duration::from_secs(5), edge.done)
        .await
        .expect("edge stopped")
        .unwrap();
}

#[tokio::test]
async fn all_unhealthy_behaviour_and_status() {
    let a = Origin::start("a").await;
    let dead = Origin::start("dead").await;
    dead.kill();
    let t = format!(
        r#"
[monitors.m]
path = "/health"
interval = "100ms"
timeout = "80ms"
tolerated_failures = 0
[edge.routes.tryall]
domains = ["tryall.example.com"]
group = "tryall"
[edge.routes.fail]
domains = ["fail.example.com"]
group = "fail"
[edge.groups.tryall]
monitor = "m"
[[edge.groups.tryall.origins]]
name = "a"
address = "{a}"
host_header = "wrong-for-probe.invalid"
[edge.groups.fail]
monitor = "m"
when_all_unhealthy = "fail"
[[edge.groups.fail.origins]]
name = "dead"
address = "{dead}"
"#,
        a = a.addr,
        dead = dead.addr
    );
    let edge = TestEdge::start(&t, APP).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = edge.client(&["tryall.example.com", "fail.example.com"]);
    let r = c
        .get(edge.url("fail.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let st = edge.edge.status();
    let j = serde_json::to_value(&st).unwrap();
    assert_eq!(j["region"], "eastus");
    let fail = st.groups.iter().find(|g| g.name == "fail").unwrap();
    assert!(!fail.healthy);
    assert!(fail.origins[0].last_probe_error.is_some());
    let tryall = st.groups.iter().find(|g| g.name == "tryall").unwrap();
    assert!(tryall.healthy, "{tryall:?}");
    assert!(tryall.origins[0].latency_ms.is_some());
    let r = c
        .get(edge.url("tryall.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = edge.metrics_text();
    assert!(
        m.contains("tandem_edge_origin_healthy{group=\"fail\",origin=\"dead\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("tandem_edge_requests_total{route=\"tryall\",class=\"2xx\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tandem_edge_no_origin_total{group=\"fail\"} 1"),
        "{m}"
    );
    edge.stop().await;
}

#[tokio::test]
async fn curl_speaks_http2_through_the_edge() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("TANDEM_CI").as_deref() != Ok("1"),
            "curl is required in CI (Debian package curl)"
        );
        eprintln!("skipping: curl is not installed");
        return;
    }
    let a = Origin::start("a").await;
    let edge = TestEdge::start(
        &format!(
            "[edge.routes.app]\ndomains = [\"app.example.com\"]\ngroup = \"web\"\n{}",
            one_group("web", &[&a], "")
        ),
        APP,
    )
    .await;
    let ca = edge.pki.ca_path();
    let port = edge.https.port();
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--cacert",
            &ca.display().to_string(),
            "--resolve",
            &format!("app.example.com:{port}:127.0.0.1"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            &format!("https://app.example.com:{port}/"),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    edge.stop().await;
}

#[derive(Default)]
struct Collect(std::sync::Mutex<Vec<tandem_edge::AccessEntry>>);

impl tandem_edge::AccessLog for Collect {
    fn log(&self, entry: tandem_edge::AccessEntry) {
        self.0.lock().unwrap().push(entry);
    }
}

#[tokio::test]
async fn access_log_records_route_origin_retries_and_affinity() {
    let a = Origin::start("a").await;
    let dead = Origin::start("dead").await;
    dead.kill();
    let log = Arc::new(Collect::default());
    let t = format!(
        r#"
[edge.routes.app]
domains = ["app.example.com"]
group = "web"
[edge.groups.web]
affinity = {{ cookie = "aff" }}
[[edge.groups.web.origins]]
name = "dead"
address = "{}"
[[edge.groups.web.origins]]
name = "a"
address = "{}"
priority = 2
"#,
        dead.addr, a.addr
    );
    let l2 = log.clone();
    let edge = TestEdge::start_with(&t, APP, move |mut o| {
        o.access_log = l2;
        o
    })
    .await;
    // The harness turns the log off in config; turn it on with a reload of the same text.
    let text = format!(
        "{REGIONS}\n[edge]\naccess_log = true\n{t}\n[edge.instances.eastus]\nhttps = [\"127.0.0.1:0\"]\n[[edge.certificates]]\ndomains = [\"app.example.com\"]\ncert = {:?}\nkey = {:?}\n",
        edge.pki.dir.path().join("app.crt").display().to_string(),
        edge.pki.dir.path().join("app.key").display().to_string()
    );
    let cfg = tandem_config::parse(&text, "t.toml").unwrap();
    edge.edge.reload(&cfg).unwrap();
    let c = edge.client(&["app.example.com"]);
    let r = c
        .get(edge.url("app.example.com", "/stream?x=1"))
        .send()
        .await
        .unwrap();
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(r.text().await.unwrap().len(), 35);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let entries = log.0.lock().unwrap().clone();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e.request_id, rid);
    assert_eq!(e.host, "app.example.com");
    assert_eq!(e.path, "/stream?x=1");
    assert_eq!(e.status, 200);
    assert_eq!(e.route.as_deref(), Some("app"));
    assert_eq!(e.group.as_deref(), Some("web"));
    assert_eq!(e.origin.as_deref(), Some("a"));
    assert_eq!(e.retries, 1);
    assert_eq!(e.affinity, Some("set"));
    assert_eq!(e.bytes_sent, 35);
    assert!(e.complete);
    assert_eq!(e.protocol, "HTTP/2");
    let line = serde_json::to_string(e).unwrap();
    assert!(line.contains("\"latency_ms\""), "{line}");
    edge.stop().await;
}

#[tokio::test]
async fn config_reload_swaps_routes_and_keeps_connections() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let body = |target: &Origin| {
        format!(
            "[edge.routes.app]\ndomains = [\"app.example.com\"]\ngroup = \"web\"\n{}",
            one_group("web", &[target], "")
        )
    };
    let edge = TestEdge::start(&body(&a), APP).await;
    let c = edge.client(&["app.example.com"]);
    let r = c
        .get(edge.url("app.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-origin"], "a");
    // A slow request in flight across the reload.
    let (c2, url) = (c.clone(), edge.url("app.example.com", "/slow/400"));
    let inflight = tokio::spawn(async move { c2.get(url).send().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cert = edge.pki.dir.path().join("app.crt");
    let key = edge.pki.dir.path().join("app.key");
    let text = format!(
        "{REGIONS}\n[edge]\n{}\n[edge.instances.eastus]\nhttps = [\"127.0.0.1:0\"]\n[[edge.certificates]]\ndomains = [\"app.example.com\"]\ncert = {:?}\nkey = {:?}\n",
        body(&b),
        cert.display().to_string(),
        key.display().to_string()
    );
    edge.edge
        .reload(&tandem_config::parse(&text, "t.toml").unwrap())
        .unwrap();
    let r = c
        .get(edge.url("app.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-origin"], "b", "same connection, new routes");
    let r = inflight.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-origin"],
        "a",
        "the in-flight request finished on the old one"
    );
    // A config that does not load is refused and the running one stays.
    let bad = text.replace(
        &format!("{:?}", key.display().to_string()),
        "\"/nonexistent.key\"",
    );
    assert!(tandem_config::parse(&bad, "t.toml").is_err());
    edge.stop().await;
}

/// A stand-in for the WAF: blocks on a header, or on a body containing "attack".
struct TestWaf;

struct TestTxn {
    header_hit: bool,
    wants_body: bool,
}

impl tandem_edge::Transaction for TestTxn {
    fn request_headers(&mut self) -> tandem_edge::Verdict {
        if self.header_hit {
            tandem_edge::Verdict::Block {
                status: http::StatusCode::FORBIDDEN,
                body: "blocked by test policy".into(),
            }
        } else {
            tandem_edge::Verdict::Continue
        }
    }
    fn wants_body(&self) -> bool {
        self.wants_body
    }
    fn request_body(&mut self, body: &bytes::Bytes, _truncated: bool) -> tandem_edge::Verdict {
        if body.windows(6).any(|w| w == b"attack") {
            tandem_edge::Verdict::Block {
                status: http::StatusCode::FORBIDDEN,
                body: "blocked body".into(),
            }
        } else {
            tandem_edge::Verdict::Continue
        }
    }
}

impl tandem_edge::RequestInspector for TestWaf {
    fn transaction(
        &self,
        head: &tandem_edge::RequestHead<'_>,
    ) -> Option<Box<dyn tandem_edge::Transaction>> {
        assert_eq!(head.policy, "strict");
        Some(Box::new(TestTxn {
            header_hit: head.headers.contains_key("x-attack"),
            wants_body: head.method == http::Method::POST,
        }))
    }
}

#[tokio::test]
async fn the_waf_phase_sees_headers_and_bodies_of_waf_routes_only() {
    let a = Origin::start("a").await;
    let t = format!(
        "[edge.routes.guarded]\ndomains = [\"app.example.com\"]\ngroup = \"web\"\nwaf = \"strict\"\n\
         [edge.routes.open]\ndomains = [\"open.example.com\"]\ngroup = \"web\"\n{}\n\
         [waf.policies.strict]\nmanaged_rules = false\n",
        one_group("web", &[&a], "")
    );
    let edge = TestEdge::start_with(&t, APP, |mut o| {
        o.inspector = Arc::new(TestWaf);
        o
    })
    .await;
    let c = edge.client(&["app.example.com", "open.example.com"]);
    let r = c
        .get(edge.url("app.example.com", "/"))
        .header("x-attack", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "blocked by test policy");
    let r = c
        .post(edge.url("app.example.com", "/"))
        .body("an attack in the body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A clean body is buffered for inspection and still reaches the origin whole.
    let r = c
        .post(edge.url("app.example.com", "/"))
        .body(vec![b'x'; 300_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["body_len"], 300_000);
    // Routes without a policy are not inspected.
    let r = c
        .get(edge.url("open.example.com", "/"))
        .header("x-attack", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    edge.stop().await;
}

/// A raw HTTP/1.1 origin that counts its connections and, when `close_idle` is set, closes
/// every connection right after answering (without saying so), as an origin whose keep-alive
/// timeout expires does.
struct CountingOrigin {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

async fn counting_origin(close_idle: bool) -> CountingOrigin {
    let connections = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let (conns, reqs) = (connections.clone(), requests.clone());
    let addr = raw_origin(move |mut s| {
        conns.fetch_add(1, Ordering::Relaxed);
        let reqs = reqs.clone();
        async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                buf.drain(..end + 4);
                reqs.fetch_add(1, Ordering::Relaxed);
                let resp: &[u8] = if head.starts_with("HEAD ") {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
                } else if head.starts_with("GET /204 ") {
                    b"HTTP/1.1 204 No Content\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                };
                if s.write_all(resp).await.is_err() || close_idle {
                    return;
                }
            }
        }
    })
    .await;
    CountingOrigin {
        addr,
        connections,
        requests,
    }
}

/// Origin connections are kept and reused (also after bodiless answers: HEAD, 204), and a
/// pooled connection the origin has closed is replaced without failing the request.
#[tokio::test]
async fn origin_connections_are_pooled_and_stale_ones_replaced() {
    let keep = counting_origin(false).await;
    let closing = counting_origin(true).await;
    let t = format!(
        r#"
[edge.routes.keep]
domains = ["app.example.com"]
group = "keep"
[edge.routes.closing]
domains = ["closing.example.com"]
group = "closing"
[edge.groups.keep]
[[edge.groups.keep.origins]]
name = "keep"
address = "{}"
[edge.groups.closing]
retries = 0
[[edge.groups.closing.origins]]
name = "closing"
address = "{}"
"#,
        keep.addr, closing.addr
    );
    let edge = TestEdge::start(&t, APP).await;
    let c = edge
        .client_builder(&["app.example.com", "closing.example.com"])
        .http1_only()
        .build()
        .unwrap();
    for i in 0..30 {
        let (method, path) = match i % 3 {
            0 => (reqwest::Method::GET, "/"),
            1 => (reqwest::Method::HEAD, "/"),
            _ => (reqwest::Method::GET, "/204"),
        };
        let r = c
            .request(method, edge.url("app.example.com", path))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.bytes().await.unwrap();
    }
    assert_eq!(keep.requests.load(Ordering::Relaxed), 30);
    assert_eq!(
        keep.connections.load(Ordering::Relaxed),
        1,
        "sequential requests share one origin connection"
    );
    // Every pooled connection to `closing` is dead by the next request (no retries allowed,
    // so a failure would show as a 502).
    for _ in 0..10 {
        let r = c
            .get(edge.url("closing.example.com", "/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(closing.requests.load(Ordering::Relaxed), 10);
    assert_eq!(closing.connections.load(Ordering::Relaxed), 10);
    let st = edge.edge.status();
    let g = st.groups.iter().find(|g| g.name == "closing").unwrap();
    assert_eq!(g.origins[0].failures, 0, "{g:?}");
    edge.stop().await;
}

/// A returning TLS client resumes its session (TLS 1.3 and 1.2) instead of a full handshake.
#[tokio::test]
async fn tls_sessions_resume() {
    let a = Origin::start("a").await;
    let t = format!(
        "[edge.routes.app]\ndomains = [\"app.example.com\"]\ngroup = \"g\"\n{}",
        one_group("g", &[&a], "")
    );
    let edge = TestEdge::start(&t, APP).await;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(edge.pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let tcp = tokio::net::TcpStream::connect(edge.https).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("app.example.com").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            kinds.push(tls.get_ref().1.handshake_kind());
            // Read an answer so that TLS 1.3 tickets (sent after the handshake) arrive.
            tls.write_all(
                b"GET /health HTTP/1.1\r\nhost: app.example.com\r\nconnection: close\r\n\r\n",
            )
            .await
            .unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
            assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
        }
        assert_eq!(
            kinds,
            [
                Some(rustls::HandshakeKind::Full),
                Some(rustls::HandshakeKind::Resumed)
            ],
            "{version:?}"
        );
    }
    edge.stop().await;
}

/// An origin that records the raw bytes of every request it gets and answers each with a
/// fixed 200, so a test sees exactly what the edge put on the wire.
struct RawOrigin {
    addr: std::net::SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
    requests: Arc<AtomicU64>,
}

impl RawOrigin {
    async fn start() -> RawOrigin {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicU64::new(0));
        let (seen2, requests2) = (seen.clone(), requests.clone());
        let addr = raw_origin(move |mut s| {
            let (seen, requests) = (seen2.clone(), requests2.clone());
            async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => return,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    seen.lock().unwrap().extend_from_slice(&chunk[..n]);
                    // One request at a time: the head, then a chunked body's last chunk
                    // (the edge sends bodies of unknown length chunked).
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    if head.contains("transfer-encoding: chunked")
                        && !buf[end + 4..].ends_with(b"0\r\n\r\n")
                    {
                        continue;
                    }
                    buf.clear();
                    requests.fetch_add(1, Ordering::SeqCst);
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        })
        .await;
        RawOrigin {
            addr,
            seen,
            requests,
        }
    }
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_and_the_connection_closed() {
    let o = RawOrigin::start().await;
    let t = format!(
        "[edge.routes.app]\ndomains = [\"*\"]\ngroup = \"web\"\nhttp = \"serve\"\n\
         [edge.groups.web]\n[[edge.groups.web.origins]]\nname = \"raw\"\naddress = \"{}\"\n",
        o.addr
    );
    let edge = TestEdge::start(&t, APP).await;
    // Both orders of the two headers, each followed by a request smuggled in the body that
    // Content-Length would have framed (CL.TE) and one that would follow the chunked body.
    let attacks: [&[u8]; 2] = [
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for attack in attacks {
        let mut s = tokio::net::TcpStream::connect(edge.http).await.unwrap();
        s.write_all(attack).await.unwrap();
        let mut out = Vec::new();
        // The edge must close the connection by itself (RFC 9112 6.1): EOF well before the
        // deadline, not a timeout.
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(matches!(r, Ok(Ok(_))), "the edge kept the connection open");
        assert!(started.elapsed() < Duration::from_secs(4));
        let resp = String::from_utf8_lossy(&out).to_ascii_lowercase();
        let status = resp.split(' ').nth(1).unwrap_or("");
        assert_eq!(
            status, "400",
            "one refusal, for the first request only: {resp}"
        );
        assert_eq!(resp.matches("http/1.1 ").count(), 1, "{resp}");
    }
    assert_eq!(
        o.requests.load(Ordering::SeqCst),
        0,
        "a request with both framings reached the origin"
    );
    let seen = String::from_utf8_lossy(&o.seen.lock().unwrap()).to_ascii_lowercase();
    assert!(
        !seen.contains("/smuggled"),
        "a smuggled request reached the origin: {seen}"
    );
    edge.stop().await;
}

#[tokio::test]
async fn first_byte_and_head_deadlines_hold_on_http1_and_http2() {
    let a = Origin::start("a").await;
    let t = format!(
        "timeouts = {{ client_header = \"400ms\", first_byte = \"400ms\" }}\n\
         [edge.routes.app]\ndomains = [\"*\"]\ngroup = \"web\"\nhttp = \"serve\"\n{}",
        one_group("web", &[&a], "")
    );
    let edge = TestEdge::start(&t, APP).await;
    let h1 = edge
        .client_builder(&["app.example.com"])
        .http1_only()
        .build()
        .unwrap();
    let h2 = edge.client(&["app.example.com"]);
    for (c, want) in [
        (&h1, reqwest::Version::HTTP_11),
        (&h2, reqwest::Version::HTTP_2),
    ] {
        // An origin slower than first_byte: 504 at about the deadline, not at the origin's pace.
        let started = std::time::Instant::now();
        let r = c
            .get(edge.url("app.example.com", "/slow/3000"))
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(r.version(), want);
        assert_eq!(r.status(), 504, "{want:?}");
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_millis(2500),
            "{want:?}: 504 after {took:?}"
        );
        // The next requests on the same connection are not hit by the deadline that passed;
        // an answer within first_byte passes.
        let r = c
            .get(edge.url("app.example.com", "/slow/250"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{want:?}");
        let r = c
            .get(edge.url("app.example.com", "/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{want:?}");
    }
    // A response streaming for longer than client_header is not cut by the head deadline.
    let started = std::time::Instant::now();
    let r = h1
        .get(edge.url("app.example.com", "/stream/6/150"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(!body.is_empty());
    // An idle keep-alive connection is closed client_header after its last response.
    let mut s = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle connection still open after 3 s");
    assert!(
        rest.is_empty(),
        "an idle connection is closed without an answer: {}",
        String::from_utf8_lossy(&rest)
    );
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(300) && after < Duration::from_millis(1500),
        "idle connection closed after {after:?}"
    );
    edge.stop().await;
}
