//! The WAF in the edge's request path, end to end: a running edge with `[waf]` policies
//! (the OWASP Core Rule Set, custom rules, a small rule set of our own for the response
//! phases), real origins and real clients.

mod common;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Origin, Pki};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tandem_edge::waf::{EdgeWaf, WafComponent};
use tandem_edge::{Edge, EdgeOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The CRS copy, or `None` (the test is skipped) when it is missing outside CI.
fn crs_dir() -> Option<PathBuf> {
    let dir = tandem_waf::ftw::default_crs_dir();
    if dir.is_none() {
        if std::env::var("TANDEM_CI").as_deref() == Ok("1") {
            panic!("the CRS copy (shared/crs) is missing; set TANDEM_CRS_DIR");
        }
        eprintln!("skipping: no CRS copy found (set TANDEM_CRS_DIR)");
    }
    dir
}

/// Everything `tracing` writes while a test runs (the WAF log).
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl Write for LogCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Install as the current thread's subscriber (the tests run on a current-thread runtime,
    /// so every request task logs here).
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let me = self.clone();
        let sub = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || me.clone())
            .finish();
        tracing::subscriber::set_default(sub)
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        let text = self
            .0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).to_string())
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// WAF events (target `tandem::waf`) about one request.
    fn waf_events(&self, request_id: &str) -> Vec<serde_json::Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["target"] == "tandem::waf" && l["fields"]["request_id"] == request_id)
            .map(|l| l["fields"].clone())
            .collect()
    }
}

/// A running edge with a WAF.
struct WafEdge {
    edge: Edge,
    waf: EdgeWaf,
    https: SocketAddr,
    cancel: CancellationToken,
    done: tokio::task::JoinHandle<()>,
    pki: Pki,
    registry: prometheus_client::registry::Registry,
    config_text: String,
}

const HOSTS: &[&str] = &[
    "shop.example.com",
    "search.example.com",
    "staging.example.com",
    "quiet.example.com",
    "open.example.com",
    "custom.example.com",
    "leak.example.com",
];

impl WafEdge {
    /// Start an edge for `eastus` from `body` (routes, groups, `[waf]`, `[geo]`...), with a
    /// certificate for every test host.
    async fn start(body: &str) -> WafEdge {
        let pki = Pki::new();
        let i = pki.issue("edge", &["*.example.com"]);
        let text = format!(
            "[regions.eastus]\npair = \"westus\"\n[regions.westus]\npair = \"eastus\"\n\n\
             [edge]\naccess_log = false\n\n[edge.instances.eastus]\nhttps = [\"127.0.0.1:0\"]\n\n\
             [[edge.certificates]]\ndomains = [\"*.example.com\"]\ncert = {:?}\nkey = {:?}\n\n{body}",
            i.cert.display().to_string(),
            i.key.display().to_string()
        );
        let cfg = tandem_config::parse(&text, "test.toml")
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{text}"));
        let mut registry = prometheus_client::registry::Registry::default();
        let waf = EdgeWaf::load(&cfg, &mut registry).await.expect("WAF loads");
        let mut opts = EdgeOptions::new("eastus");
        opts.inspector = waf.inspector();
        let edge = Edge::new(&cfg, opts, &mut registry).expect("edge");
        let listeners = edge.bind().await.expect("bind");
        let https = listeners.https_addrs()[0];
        let cancel = CancellationToken::new();
        let (e2, c2) = (edge.clone(), cancel.clone());
        let done = tokio::spawn(async move { e2.run(listeners, c2).await });
        WafEdge {
            edge,
            waf,
            https,
            cancel,
            done,
            pki,
            registry,
            config_text: text,
        }
    }

    fn client(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.pki.ca_pem.as_bytes()).expect("CA"),
            );
        for h in HOSTS {
            b = b.resolve(h, self.https);
        }
        b.build().expect("client")
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https.port())
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("metrics");
        out
    }

    async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.done).await;
        self.edge.stop_probes().await;
    }
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id")
        .to_string()
}

fn rule_ids(events: &[serde_json::Value]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| e["rule_id"].as_u64())
        .collect()
}

fn group(origin: &Origin) -> String {
    format!(
        "[edge.groups.web]\n[[edge.groups.web.origins]]\nname = \"{}\"\naddress = \"{}\"\n",
        origin.name, origin.addr
    )
}

const SQLI: &str = "/products?id=1%27%20UNION%20SELECT%20username,password%20FROM%20users--";

fn crs_config(crs: &Path, origin: &Origin) -> String {
    format!(
        r#"
[edge.routes.shop]
domains = ["shop.example.com"]
group = "web"
waf = "shop"

[edge.routes.search]
domains = ["search.example.com"]
group = "web"
waf = "shop"

[edge.routes.staging]
domains = ["staging.example.com"]
group = "web"
waf = "shop"

[edge.routes.quiet]
domains = ["quiet.example.com"]
group = "web"
waf = "shop"

[edge.routes.open]
domains = ["open.example.com"]
group = "web"

{group}

[waf.policies.shop]
crs = {crs:?}
mode = "prevention"
block_body = "Blocked by the WAF. Request id: {{request_id}}\n"

[waf.policies.shop.routes.staging]
mode = "detection"

[waf.policies.shop.routes.quiet]
mode = "off"

[[waf.policies.shop.routes.search.exclusions]]
tags = ["attack-sqli"]
target = "ARGS:q"
"#,
        group = group(origin),
        crs = crs.display().to_string(),
    )
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";

#[tokio::test]
async fn crs_blocks_attacks_in_prevention_and_logs_them_with_the_request_id() {
    let Some(crs) = crs_dir() else { return };
    let log = LogCapture::default();
    let _guard = log.install();
    let origin = Origin::start("origin").await;
    let e = WafEdge::start(&crs_config(&crs, &origin)).await;
    let c = e.client();

    // Benign traffic reaches the origin: a GET with a query, a form POST and a JSON POST.
    let r = c
        .get(e.url(
            "shop.example.com",
            "/products/list?page=2&q=blue+running+shoes",
        ))
        .header("user-agent", UA)
        .header("accept", "text/html")
        .send()
        .await
        .expect("benign GET");
    assert_eq!(r.status(), 200);
    let r = c
        .post(e.url("shop.example.com", "/checkout"))
        .header("user-agent", UA)
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Jane+Doe&email=jane%40example.com&zip=12345")
        .send()
        .await
        .expect("benign form");
    assert_eq!(r.status(), 200);
    let r = c
        .post(e.url("shop.example.com", "/api/orders"))
        .header("user-agent", UA)
        .header("accept", "application/json")
        .json(&serde_json::json!({"items": [{"sku": "A-100", "qty": 2}], "note": "gift wrap"}))
        .send()
        .await
        .expect("benign JSON");
    assert_eq!(r.status(), 200);
    assert_eq!(origin.hits(), 3);

    // SQL injection in the query: refused with the policy's body, which names the request id
    // the edge also sends in x-request-id and logs with every matched rule.
    let r = c
        .get(e.url("shop.example.com", SQLI))
        .header("user-agent", UA)
        .header("accept", "text/html")
        .send()
        .await
        .expect("attack");
    assert_eq!(r.status(), 403);
    let id = request_id(&r);
    let body = r.text().await.expect("body");
    assert_eq!(body, format!("Blocked by the WAF. Request id: {id}\n"));
    let events = log.waf_events(&id);
    let ids = rule_ids(&events);
    assert!(ids.contains(&942100), "SQLi rule logged: {ids:?}");
    assert!(ids.contains(&949110), "blocking evaluation logged: {ids:?}");
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "waf blocked request" && e["rule"] == "949110"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["route"] == "shop" && e["policy"] == "shop"),
        "{events:?}"
    );

    // XSS in a form body, and command injection in a JSON body: the body phase.
    let r = c
        .post(e.url("shop.example.com", "/comment"))
        .header("user-agent", UA)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E")
        .send()
        .await
        .expect("xss");
    assert_eq!(r.status(), 403);
    let ids = rule_ids(&log.waf_events(&request_id(&r)));
    assert!(ids.iter().any(|i| (941000..942000).contains(i)), "{ids:?}");
    let r = c
        .post(e.url("shop.example.com", "/api/ping"))
        .header("user-agent", UA)
        .json(&serde_json::json!({"host": "127.0.0.1; cat /etc/passwd"}))
        .send()
        .await
        .expect("rce");
    assert_eq!(r.status(), 403);
    // HTTP/2 requests carry the host in :authority; the WAF sees it as Host (no 920280).
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .add_root_certificate(reqwest::Certificate::from_pem(e.pki.ca_pem.as_bytes()).expect("CA"))
        .resolve("shop.example.com", e.https)
        .build()
        .expect("h2 client");
    let r = h2
        .get(e.url("shop.example.com", "/products/list?page=3"))
        .header("user-agent", UA)
        .header("accept", "text/html")
        .send()
        .await
        .expect("h2");
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let ids = rule_ids(&log.waf_events(&request_id(&r)));
    assert!(ids.is_empty(), "a benign HTTP/2 request matched {ids:?}");
    let r = h2
        .get(e.url("shop.example.com", SQLI))
        .header("user-agent", UA)
        .send()
        .await
        .expect("h2 attack");
    assert_eq!(r.status(), 403);
    assert_eq!(origin.hits(), 4, "no attack reached the origin");

    // Metrics per rule and route, and the admin status.
    let m = e.metrics();
    assert!(
        m.contains(r#"tandem_waf_blocks_total{policy="shop",route="shop",rule="949110"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"tandem_waf_matches_total{policy="shop",route="shop",rule="942100"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"tandem_waf_evaluations_total{policy="shop",route="shop"} 8"#),
        "{m}"
    );
    let st = e.waf.status();
    let shop = &st.policies[0];
    assert_eq!(shop.policy, "shop");
    assert_eq!((shop.inspected, shop.blocked), (8, 4));
    assert!(shop.managed_rules > 500);
    let tables = tandem_admin::Component::tables(&WafComponent(e.waf.clone()));
    let text = tandem_admin::render_tables(&tables);
    assert!(text.contains("WAF policies"), "{text}");
    assert!(text.contains("staging"), "{text}");
    e.stop().await;
}

#[tokio::test]
async fn detection_logs_exclusions_exempt_and_off_costs_nothing() {
    let Some(crs) = crs_dir() else { return };
    let log = LogCapture::default();
    let _guard = log.install();
    let origin = Origin::start("origin").await;
    let e = WafEdge::start(&crs_config(&crs, &origin)).await;
    let c = e.client();

    // Detection mode on the staging route: the attack passes, and is logged as what
    // prevention would have refused.
    let r = c
        .get(e.url("staging.example.com", SQLI))
        .header("user-agent", UA)
        .send()
        .await
        .expect("staging");
    assert_eq!(r.status(), 200);
    let events = log.waf_events(&request_id(&r));
    let ids = rule_ids(&events);
    assert!(ids.contains(&942100), "{ids:?}");
    assert!(
        events.iter().all(|e| e["mode"] == "Detection"),
        "{events:?}"
    );
    assert_eq!(e.waf.status().policies[0].detected, 1);

    // The search route excludes ARGS:q from the SQLi rules: SQL in q passes, in another
    // argument it does not.
    let r = c
        .get(e.url(
            "search.example.com",
            "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--",
        ))
        .header("user-agent", UA)
        .header("accept", "text/html")
        .send()
        .await
        .expect("excluded");
    assert_eq!(r.status(), 200);
    let r = c
        .get(e.url(
            "search.example.com",
            "/search?x=1%27%20UNION%20SELECT%20password%20FROM%20users--",
        ))
        .header("user-agent", UA)
        .send()
        .await
        .expect("not excluded");
    assert_eq!(r.status(), 403);
    // The exclusion is the search route's own: the shop route still refuses q.
    let r = c
        .get(e.url(
            "shop.example.com",
            "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--",
        ))
        .header("user-agent", UA)
        .send()
        .await
        .expect("shop q");
    assert_eq!(r.status(), 403);

    // Mode off on a route, and a route without a policy: nothing is evaluated at all.
    let before = e.waf.status().policies[0].inspected;
    for host in ["quiet.example.com", "open.example.com"] {
        let r = c
            .get(e.url(host, SQLI))
            .header("user-agent", UA)
            .send()
            .await
            .expect("off");
        assert_eq!(r.status(), 200, "{host}");
        assert!(log.waf_events(&request_id(&r)).is_empty());
    }
    assert_eq!(e.waf.status().policies[0].inspected, before);
    let m = e.metrics();
    assert!(
        m.contains(r#"tandem_waf_evaluations_total{policy="shop",route="quiet"} 0"#),
        "{m}"
    );
    e.stop().await;
}

#[tokio::test]
async fn custom_rules_block_rate_limit_geo_and_redirect() {
    let log = LogCapture::default();
    let _guard = log.install();
    let origin = Origin::start("origin").await;
    let body = format!(
        r#"
[geo]
networks = [{{ cidr = "127.0.0.0/8", country = "DE", continent = "EU" }}]

[edge.routes.custom]
domains = ["custom.example.com"]
group = "web"
waf = "custom"

{group}

[waf.policies.custom]
managed_rules = false
mode = "prevention"

[[waf.policies.custom.custom_rules]]
name = "private-from-loopback"
priority = 1
action = "block"
[[waf.policies.custom.custom_rules.match]]
variable = "request_path"
operator = "begins_with"
values = ["/private"]
[[waf.policies.custom.custom_rules.match]]
variable = "remote_addr"
operator = "ip_match"
values = ["127.0.0.0/8"]

[[waf.policies.custom.custom_rules]]
name = "login-rate"
priority = 2
action = "block"
rate_limit = {{ threshold = 3, window = "1m" }}
[[waf.policies.custom.custom_rules.match]]
variable = "request_path"
operator = "begins_with"
values = ["/login"]

[[waf.policies.custom.custom_rules]]
name = "no-germany"
priority = 3
action = "block"
[[waf.policies.custom.custom_rules.match]]
variable = "request_path"
operator = "begins_with"
values = ["/geo"]
[[waf.policies.custom.custom_rules.match]]
variable = "remote_addr"
operator = "geo_match"
values = ["DE"]

[[waf.policies.custom.custom_rules]]
name = "moved"
priority = 4
action = "redirect"
redirect_url = "https://custom.example.com/new"
[[waf.policies.custom.custom_rules.match]]
variable = "request_path"
operator = "equal"
values = ["/old"]
"#,
        group = group(&origin)
    );
    let e = WafEdge::start(&body).await;
    let c = e.client();
    let get = |p: &str| c.get(e.url("custom.example.com", p)).send();

    let r = get("/private/report").await.expect("ip");
    assert_eq!(r.status(), 403);
    let events = log.waf_events(&request_id(&r));
    assert!(
        events
            .iter()
            .any(|e| e["custom_rule"] == "private-from-loopback"),
        "{events:?}"
    );
    assert_eq!(get("/public").await.expect("ok").status(), 200);

    for i in 0..3 {
        assert_eq!(
            get("/login").await.expect("login").status(),
            200,
            "attempt {i}"
        );
    }
    let r = get("/login").await.expect("limited");
    assert_eq!(r.status(), 429, "over the rate limit");

    assert_eq!(get("/geo/page").await.expect("geo").status(), 403);

    let r = get("/old").await.expect("redirect");
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("https://custom.example.com/new")
    );
    let m = e.metrics();
    for rule in ["private-from-loopback", "login-rate", "no-germany", "moved"] {
        assert!(
            m.contains(&format!(
                r#"tandem_waf_blocks_total{{policy="custom",route="custom",rule="{rule}"}} 1"#
            )),
            "{rule}: {m}"
        );
    }
    e.stop().await;
}

/// An origin answering `text/plain`: `/secret` leaks a marker, `/big` sends 300 KB in chunks.
async fn text_origin() -> (SocketAddr, CancellationToken) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = tokio::select! {
                _ = c.cancelled() => return,
                r = l.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = match req.uri().path() {
                        "/secret" => "account 42: TOP-SECRET token".to_string(),
                        "/big" => "x".repeat(300_000),
                        "/header" => "fine".to_string(),
                        _ => "hello".to_string(),
                    };
                    let mut b = Response::builder().header("content-type", "text/plain");
                    if req.uri().path() == "/header" {
                        b = b.header("x-debug", "stacktrace");
                    }
                    Ok::<_, Infallible>(b.body(Full::new(Bytes::from(body))).expect("response"))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, cancel)
}

#[tokio::test]
async fn response_phases_bodies_over_the_limit_and_reloads() {
    let log = LogCapture::default();
    let _guard = log.install();
    let (origin, stop_origin) = text_origin().await;
    // A rule set of our own in place of CRS: one rule per phase under test.
    let rules = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(rules.path().join("rules")).expect("rules dir");
    std::fs::write(
        rules.path().join("rules/test.conf"),
        r#"
SecRule REQUEST_BODY "@contains forbidden-word" "id:10001,phase:2,deny,status:403,log,msg:'forbidden word in body'"
SecRule RESPONSE_HEADERS:X-Debug "@streq stacktrace" "id:10002,phase:3,deny,status:502,log,msg:'debug header'"
SecRule RESPONSE_BODY "@contains TOP-SECRET" "id:10003,phase:4,deny,status:403,log,msg:'secret in response'"
"#,
    )
    .expect("rules");
    let crs = rules.path().display().to_string();
    let config = |mode: &str, over: &str, crs: &str| {
        format!(
            r#"
[edge.limits]
inspect_body_bytes = "64KiB"

[edge.routes.leak]
domains = ["leak.example.com"]
group = "web"
waf = "leak"

[edge.groups.web]
[[edge.groups.web.origins]]
name = "text"
address = "{origin}"

[waf.policies.leak]
crs = {crs:?}
mode = "{mode}"
inspect_response_body = true
request_body_limit = "16KiB"
request_body_over_limit = "{over}"
"#
        )
    };
    let e = WafEdge::start(&config("prevention", "block", &crs)).await;
    let c = e.client();
    let url = |p: &str| e.url("leak.example.com", p);

    assert_eq!(c.get(url("/hello")).send().await.expect("ok").status(), 200);
    // Phase 4: the body is buffered, inspected, and replaced by the verdict.
    let r = c.get(url("/secret")).send().await.expect("secret");
    assert_eq!(r.status(), 403);
    let text = r.text().await.expect("body");
    assert!(!text.contains("TOP-SECRET"), "{text}");
    // A body longer than the response limit is inspected in part and passed on whole.
    let r = c.get(url("/big")).send().await.expect("big");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("bytes").len(), 300_000);
    // Phase 3: response headers.
    assert_eq!(
        c.get(url("/header")).send().await.expect("hdr").status(),
        502
    );
    // Phase 2 on the request body, and bodies over request_body_limit.
    let r = c
        .post(url("/form"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=a+forbidden-word+here")
        .send()
        .await
        .expect("body");
    assert_eq!(r.status(), 403);
    let r = c
        .post(url("/upload"))
        .body(vec![b'a'; 40_000])
        .send()
        .await
        .expect("big body");
    assert_eq!(
        r.status(),
        413,
        "over request_body_limit with request_body_over_limit = block"
    );
    let events = log.waf_events(&request_id(&r));
    assert!(
        events.iter().any(|e| e["rule"] == "request_body_limit"),
        "{events:?}"
    );

    // Reload: a policy that does not compile is refused and the running one keeps blocking.
    let bad_path = format!("{crs}-missing");
    let bad = tandem_config::parse(
        &e.config_text.replace(
            &config("prevention", "block", &crs),
            &config("prevention", "block", &bad_path),
        ),
        "test.toml",
    )
    .expect("config validates (the directory is checked when it loads)");
    let before = e.waf.status().generation;
    let err = tandem_edge::waf::reload(&e.edge, &e.waf, &bad)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("does not exist"), "{err}");
    let st = e.waf.status();
    assert_eq!(st.generation, before);
    assert_eq!(st.reloads_failed, 1);
    assert!(st.last_error.is_some());
    assert_eq!(
        c.get(url("/secret")).send().await.expect("still").status(),
        403
    );

    // A good reload swaps the new policy in: inspect the prefix of long bodies, detection.
    let good = tandem_config::parse(
        &e.config_text.replace(
            &config("prevention", "block", &crs),
            &config("detection", "inspect_prefix", &crs),
        ),
        "test.toml",
    )
    .expect("config");
    tandem_edge::waf::reload(&e.edge, &e.waf, &good)
        .await
        .expect("reloads");
    let st = e.waf.status();
    assert_eq!(st.generation, before + 1);
    assert!(st.last_error.is_none());
    let r = c.get(url("/secret")).send().await.expect("detection");
    assert_eq!(r.status(), 200);
    let ids = rule_ids(&log.waf_events(&request_id(&r)));
    assert_eq!(ids, vec![10003]);
    let r = c
        .post(url("/upload"))
        .body(vec![b'a'; 40_000])
        .send()
        .await
        .expect("prefix");
    assert_eq!(r.status(), 200);
    e.stop().await;
    stop_origin.cancel();
}

#[tokio::test]
async fn routes_naming_a_policy_need_a_waf() {
    let origin = Origin::start("origin").await;
    let text = format!(
        "[regions.eastus]\npair = \"westus\"\n[regions.westus]\npair = \"eastus\"\n\
         [edge.instances.eastus]\nhttp = [\"127.0.0.1:0\"]\n\
         [edge.routes.app]\ndomains = [\"*\"]\ngroup = \"web\"\nhttp = \"serve\"\nwaf = \"p\"\n{}\n\
         [waf.policies.p]\nmanaged_rules = false\nmode = \"prevention\"\n\
         [[waf.policies.p.custom_rules]]\nname = \"r\"\npriority = 1\naction = \"block\"\n\
         [[waf.policies.p.custom_rules.match]]\nvariable = \"request_path\"\noperator = \"begins_with\"\nvalues = [\"/x\"]\n",
        group(&origin)
    );
    let cfg = tandem_config::parse(&text, "t.toml").expect("valid");
    let mut registry = prometheus_client::registry::Registry::default();
    // Without a WAF the edge refuses to start rather than forward those requests unchecked.
    let err = Edge::new(&cfg, EdgeOptions::new("eastus"), &mut registry).expect_err("refused");
    assert!(err.to_string().contains("no WAF serves it"), "{err}");
    // A policy that is not defined is a config error naming the route's key.
    let err = tandem_config::parse(&text.replace("waf = \"p\"", "waf = \"nope\""), "t.toml")
        .expect_err("undefined policy");
    assert!(err.to_string().contains("edge.routes.app.waf"), "{err}");
}
