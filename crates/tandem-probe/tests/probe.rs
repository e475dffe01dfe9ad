//! Probes against real servers on loopback.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tandem_config::monitor::{HealthPolicy, Monitor, ProbeMethod, ProbeProtocol, ProbeTarget};
use tandem_config::value::StatusRange;
use tandem_probe::{ProbeMetrics, Prober, State, Target};
use tandem_testkit::{Origin, wait_until};
use tokio_util::sync::CancellationToken;

fn monitor(protocol: ProbeProtocol) -> Monitor {
    Monitor {
        name: "m".into(),
        protocol,
        port: None,
        path: "/health".into(),
        host: None,
        method: ProbeMethod::Get,
        headers: vec![("x-probe".into(), "tandem".into())],
        expected_status: vec![StatusRange { lo: 200, hi: 299 }],
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(80),
        policy: HealthPolicy::Consecutive {
            tolerated_failures: 1,
            recover_after: 2,
        },
        tls_verify: true,
        ca_file: None,
    }
}

fn target(addr: std::net::SocketAddr, m: Monitor) -> Target {
    Target {
        service: "test",
        id: format!("t/{addr}"),
        probe: ProbeTarget {
            connect: addr.to_string(),
            host: "app.test".into(),
            monitor: m,
        },
        passive_threshold: Some(3),
    }
}

#[tokio::test]
async fn http_probe_follows_status_and_outage() {
    let origin = Origin::start("east", "127.0.0.1:0").await;
    let token = CancellationToken::new();
    let prober = Prober::new(token.clone(), ProbeMetrics::default());
    let mut changes = prober.subscribe();
    let m = monitor(ProbeProtocol::Http);
    let bound = m.detection_bound();
    let cell = prober.add(target(origin.addr(), m)).unwrap();

    assert!(
        wait_until(Duration::from_secs(2), async || cell.state()
            == State::Online)
        .await
        .is_some()
    );
    let h = cell.health();
    assert_eq!(h.last.as_ref().unwrap().detail, "HTTP 200");
    assert!(h.latency.is_some());
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();

    // A 503 from /health degrades it within the detection bound (plus one interval of slack).
    origin.set_health(503);
    let took = wait_until(Duration::from_secs(3), async || {
        cell.state() == State::Degraded
    })
    .await
    .expect("degraded");
    assert!(
        took <= bound + Duration::from_millis(150),
        "took {took:?}, bound {bound:?}"
    );
    assert!(changes.has_changed().unwrap());
    origin.set_health(200);
    assert!(
        wait_until(Duration::from_secs(2), async || cell.state()
            == State::Online)
        .await
        .is_some()
    );

    // Stopping the server entirely (connection refused) degrades it too.
    origin.stop().await;
    assert!(
        wait_until(Duration::from_secs(2), async || cell.state()
            == State::Degraded)
        .await
        .is_some()
    );
    assert!(
        cell.health()
            .last
            .clone()
            .unwrap()
            .detail
            .contains("connect")
    );
    origin.restart().await;
    assert!(
        wait_until(Duration::from_secs(2), async || cell.state()
            == State::Online)
        .await
        .is_some()
    );

    token.cancel();
    prober.closed().await;
}

#[tokio::test]
async fn slow_answers_time_out() {
    let origin = Origin::start("slow", "127.0.0.1:0").await;
    origin.set_delay(Duration::from_millis(300));
    let token = CancellationToken::new();
    let prober = Prober::new(token.clone(), ProbeMetrics::default());
    let cell = prober
        .add(target(origin.addr(), monitor(ProbeProtocol::Http)))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(2), async || cell.state()
            == State::Degraded)
        .await
        .is_some()
    );
    assert!(
        cell.health()
            .last
            .clone()
            .unwrap()
            .detail
            .starts_with("timeout")
    );
    token.cancel();
    prober.closed().await;
}

#[tokio::test]
async fn tcp_probe_and_passive_reports() {
    let origin = Origin::start("tcp", "127.0.0.1:0").await;
    let token = CancellationToken::new();
    let prober = Prober::new(token.clone(), ProbeMetrics::default());
    let mut m = monitor(ProbeProtocol::Tcp);
    m.interval = Duration::from_secs(5);
    m.timeout = Duration::from_secs(1);
    let cell = prober.add(target(origin.addr(), m)).unwrap();
    assert!(
        wait_until(Duration::from_secs(2), async || cell.state()
            == State::Online)
        .await
        .is_some()
    );
    // Three failed requests in a row take it out long before the next probe (5s away).
    cell.report_passive(false);
    cell.report_passive(true);
    cell.report_passive(false);
    cell.report_passive(false);
    assert_eq!(cell.state(), State::Online);
    cell.report_passive(false);
    assert_eq!(cell.state(), State::Degraded);
    cell.set_disabled(true);
    assert_eq!(cell.state(), State::Disabled);
    token.cancel();
    prober.closed().await;
}

#[tokio::test]
async fn https_probe_verifies_against_a_ca_file() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let ca = tandem_tls::LabCa::load_or_create(dir.path()).unwrap();
    let issued = ca.issue("srv", &["app.test"]).unwrap();
    let server = tandem_tls::rustls::ServerConfig::builder_with_provider(tandem_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            tandem_tls::load_certs(&issued.cert_path).unwrap(),
            tandem_tls::load_key(&issued.key_path).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Empty::<bytes::Bytes>::new(),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                }
            });
        }
    });
    let token = CancellationToken::new();
    let prober = Prober::new(token.clone(), ProbeMetrics::default());
    let mut good = monitor(ProbeProtocol::Https);
    good.ca_file = Some(ca.ca_cert_path());
    let ok = prober.add(target(addr, good)).unwrap();
    let untrusted = prober
        .add(target(addr, monitor(ProbeProtocol::Https)))
        .unwrap();
    let mut lax = monitor(ProbeProtocol::Https);
    lax.tls_verify = false;
    let insecure = prober.add(target(addr, lax)).unwrap();
    assert!(
        wait_until(Duration::from_secs(3), async || ok.state() == State::Online
            && insecure.state() == State::Online
            && untrusted.state() == State::Degraded)
        .await
        .is_some(),
        "ok={:?} insecure={:?} untrusted={:?}",
        ok.health().last,
        insecure.health().last,
        untrusted.health().last
    );
    assert!(
        untrusted
            .health()
            .last
            .clone()
            .unwrap()
            .detail
            .starts_with("tls")
    );
    token.cancel();
    prober.closed().await;
}
