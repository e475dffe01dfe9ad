//! TLS on the client listener and between replicas (verified against a configured CA), and
//! webhooks with retries.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Lab, Opts, PASSWORD, SECRET, USER, eventually, image};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_for_clients_and_replication() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("cert");
    let cert = tmp.path().join("cert.pem");
    let key = tmp.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("key");
    let le = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let lw = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (ea, wa) = (le.local_addr().expect("a"), lw.local_addr().expect("a"));
    let hash = tandem_registry::hash_password(PASSWORD).expect("hash");
    let tls = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        cert.display(),
        key.display()
    );
    let src = format!(
        "[regions.eastus]\n[regions.westus]\n[registry]\n[registry.users.{USER}]\npassword_hash = \"{hash}\"\n[registry.replication]\nsecret = \"{SECRET}\"\nca = \"{}\"\npoll_wait = \"2s\"\n[registry.replicas.eastus]\nlisten = \"{ea}\"\ndata_dir = \"{}\"\n{tls}\n[registry.replicas.westus]\nlisten = \"{wa}\"\ndata_dir = \"{}\"\n{tls}\n",
        cert.display(),
        tmp.path().join("e").display(),
        tmp.path().join("w").display()
    );
    let cfg = tandem_config::parse(&src, "tls.toml")
        .expect("config")
        .registry
        .expect("registry");
    assert!(cfg.replicas[0].url.starts_with("https://"));
    let token = CancellationToken::new();
    let he = tandem_registry::Replica::start(&cfg, "eastus", le, token.clone())
        .await
        .expect("east");
    let hw = tandem_registry::Replica::start(&cfg, "westus", lw, token.clone())
        .await
        .expect("west");
    let root = reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).expect("root");
    let http = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .expect("client");
    let mut east = common::Client::new(&format!("https://{ea}"), Some((USER, PASSWORD)));
    east.http = http.clone();
    let mut west = common::Client::new(&format!("https://{wa}"), Some((USER, PASSWORD)));
    west.http = http;
    assert_eq!(east.get("/v2/").await.status(), 200);
    let img = image(301, &[5000]);
    east.push_image("tls/app", "v1", &img).await;
    // Replicated over https, verified with the configured CA.
    let d = eventually(Duration::from_secs(20), || async {
        let v = hw.status().await;
        (v["peers"][0]["applied_total"].as_u64().unwrap_or(0) >= 3).then_some(())
    })
    .await;
    assert!(d.is_some(), "{}", hw.status().await);
    assert_eq!(
        west.tag_digest("tls/app", "v1").await.as_deref(),
        Some(img.digest.as_str())
    );
    // Plain http to a TLS listener does not work.
    let plain = reqwest::get(format!("http://{ea}/v2/")).await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    token.cancel();
    he.wait().await;
    hw.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_for_push_delete_and_replicated_with_retries() {
    // A receiver that fails the first two deliveries, then records events.
    let events: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let failures = Arc::new(Mutex::new(2u32));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_addr = l.local_addr().expect("addr");
    let (ev, fl) = (events.clone(), failures.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (ev, fl) = (ev.clone(), fl.clone());
                async move {
                    {
                        let mut f = fl.lock().expect("lock");
                        if *f > 0 {
                            *f -= 1;
                            return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                    }
                    let mut v: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    v["signed"] = serde_json::Value::Bool(
                        headers
                            .get("x-tandem-signature")
                            .and_then(|s| s.to_str().ok())
                            .is_some_and(|s| s.starts_with("sha256=")),
                    );
                    ev.lock().expect("lock").push(v);
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(l, app).await });
    let lab = Lab::start(
        &["eastus", "westus"],
        Opts {
            registry_extra: format!(
                "[registry.webhooks.audit]\nurl = \"http://{hook_addr}/hook\"\nsecret = \"hook-secret\"\nmax_retries = 5\ntimeout = \"2s\"\n"
            ),
            ..Opts::default()
        },
    )
    .await;
    let east = lab.client(0);
    let img = image(401, &[100]);
    east.push_image("hooks/app", "v1", &img).await;
    east.req(reqwest::Method::DELETE, "/v2/hooks/app/manifests/v1")
        .send()
        .await
        .expect("delete");
    let got = eventually(Duration::from_secs(20), || async {
        let e = events.lock().expect("lock").clone();
        let has = |action: &str, region: &str| {
            e.iter().any(|v| {
                v["action"] == action
                    && v["region"] == region
                    && v["target"]["repository"] == "hooks/app"
            })
        };
        (has("push", "eastus") && has("delete", "eastus") && has("replicated", "westus"))
            .then_some(e)
    })
    .await
    .unwrap_or_else(|| panic!("events: {:?}", events.lock().expect("lock")));
    assert!(got.iter().all(|v| v["signed"] == true));
    assert!(
        got.iter()
            .any(|v| v["target"]["tag"] == "v1" && v["target"]["digest"] == img.digest)
    );
    let m = lab.handle(0).metrics_text();
    assert!(
        m.contains(
            "tandem_registry_webhook_deliveries_total{webhook=\"audit\",result=\"retried\"}"
        ),
        "{m}"
    );
    lab.shutdown().await;
}
