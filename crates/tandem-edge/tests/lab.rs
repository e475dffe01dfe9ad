//! The lab's edge section (`examples/lab.toml`) with the lab CA: each region's edge sends
//! app.tandem.test to its own region's app first and to the paired region's when its own dies.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Origin;
use tandem_edge::{CertSource, CertSpec, Edge, EdgeOptions};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn lab_edges_prefer_their_own_region_and_fail_over() {
    let east = Origin::start_on("eastus", "127.0.1.10:0".parse().unwrap()).await;
    let west = Origin::start_on("westus", "127.0.2.10:0".parse().unwrap()).await;
    // The lab's own config, with listeners on free ports and the test apps' ports.
    let text = tandem_config::BUILTIN_LAB
        .replace("127.0.1.1:8443", "127.0.1.1:0")
        .replace("127.0.1.1:8080", "127.0.1.1:0")
        .replace("127.0.2.1:8443", "127.0.2.1:0")
        .replace("127.0.2.1:8080", "127.0.2.1:0")
        .replace(
            "address = \"127.0.1.10:8000\"",
            &format!("address = \"{}\"", east.addr),
        )
        .replace(
            "address = \"127.0.2.10:8000\"",
            &format!("address = \"{}\"", west.addr),
        )
        .replace("port = 8000\n", "");
    let cfg = tandem_config::parse(&text, "lab.toml").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca = tandem_tls::LabCa::load_or_create(dir.path()).unwrap();
    let issued = ca
        .issue("edge", &["app.tandem.test", "*.tandem.test"])
        .unwrap();
    let cancel = CancellationToken::new();
    let mut edges = Vec::new();
    for region in ["eastus", "westus"] {
        let mut opts = EdgeOptions::new(region);
        opts.access_log = std::sync::Arc::new(tandem_edge::NoLog);
        opts.extra_certificates = vec![CertSpec {
            domains: vec!["app.tandem.test".into(), "*.tandem.test".into()],
            source: CertSource::Files {
                cert: issued.cert_path.clone(),
                key: issued.key_path.clone(),
            },
        }];
        let mut registry = prometheus_client::registry::Registry::default();
        let edge = Edge::new(&cfg, opts, &mut registry).unwrap();
        let l = edge.bind().await.unwrap();
        let https = l.https_addrs()[0];
        let e2 = edge.clone();
        let c = cancel.clone();
        tokio::spawn(async move { e2.run(l, c).await });
        edges.push((region, edge, https));
    }
    let ca_pem = std::fs::read(ca.ca_cert_path()).unwrap();
    let client = |addr| {
        reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
            .resolve("app.tandem.test", addr)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    for (region, _, https) in &edges {
        let r = client(*https)
            .get(format!("https://app.tandem.test:{}/", https.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["x-origin"],
            *region,
            "each edge prefers its own region"
        );
    }
    east.kill();
    let (_, _, east_edge) = &edges[0];
    for _ in 0..5 {
        let r = client(*east_edge)
            .get(format!("https://app.tandem.test:{}/", east_edge.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-origin"],
            "westus",
            "eastus's edge fails over to westus"
        );
    }
    cancel.cancel();
}
