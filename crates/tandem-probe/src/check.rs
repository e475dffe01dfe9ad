//! One probe: connect, optionally TLS, optionally an HTTP request; classify the result.
//!
//! Every probe opens a fresh connection on purpose: a pooled connection would hide a listener
//! that stopped accepting, which is exactly the failure a region outage looks like.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tandem_config::monitor::{ProbeMethod, ProbeProtocol, ProbeTarget};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::state::Outcome;

/// Most of a probe response body that is read (and discarded) before the connection closes.
const MAX_BODY: usize = 64 * 1024;

/// Run one probe against `target`, bounded by the monitor's timeout.
pub(crate) async fn probe(target: &ProbeTarget, tls: Option<&Arc<ClientConfig>>) -> Outcome {
    let m = &target.monitor;
    let start = Instant::now();
    let result = tokio::time::timeout(m.timeout, attempt(target, tls, start)).await;
    let (ok, latency, detail) = match result {
        Ok(Ok((status, latency))) => match status {
            None => (true, latency, "tcp connect ok".to_string()),
            Some(code) => (m.status_ok(code), latency, format!("HTTP {code}")),
        },
        Ok(Err(e)) => (false, start.elapsed(), e),
        Err(_) => (
            false,
            start.elapsed(),
            format!(
                "timeout after {}",
                tandem_config::value::format_duration(m.timeout)
            ),
        ),
    };
    Outcome {
        at: SystemTime::now(),
        ok,
        latency,
        detail,
    }
}

/// Returns the HTTP status (None for TCP probes) and the time to it.
async fn attempt(
    target: &ProbeTarget,
    tls: Option<&Arc<ClientConfig>>,
    start: Instant,
) -> Result<(Option<u16>, Duration), String> {
    let m = &target.monitor;
    let tcp = TcpStream::connect(&target.connect)
        .await
        .map_err(|e| format!("connect {}: {e}", target.connect))?;
    if m.protocol == ProbeProtocol::Tcp {
        return Ok((None, start.elapsed()));
    }
    let _ = tcp.set_nodelay(true);
    match (m.protocol, tls) {
        (ProbeProtocol::Https, Some(cfg)) => {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| format!("bad TLS server name {:?}: {e}", target.host))?;
            let stream = TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            http(target, stream, start).await
        }
        (ProbeProtocol::Https, None) => Err("https probe without a TLS configuration".into()),
        _ => http(target, tcp, start).await,
    }
}

async fn http<S>(
    target: &ProbeTarget,
    io: S,
    start: Instant,
) -> Result<(Option<u16>, Duration), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let m = &target.monitor;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("http handshake: {e}"))?;
    let conn_task = tokio::spawn(conn);
    let method = match m.method {
        ProbeMethod::Get => http::Method::GET,
        ProbeMethod::Head => http::Method::HEAD,
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(m.path.as_str())
        .header(http::header::HOST, host_header(target))
        .header(http::header::USER_AGENT, "Tandem-Probe/1.0")
        .header(http::header::CONNECTION, "close");
    for (k, v) in &m.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad probe request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("http: {e}"))?;
    let latency = start.elapsed();
    let status = resp.status().as_u16();
    // Drain a bounded amount so the server sees a clean exchange; the verdict is the status.
    let mut body = resp.into_body();
    let mut read = 0usize;
    while read < MAX_BODY {
        match body.frame().await {
            Some(Ok(f)) => read += f.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
    conn_task.abort();
    Ok((Some(status), latency))
}

fn host_header(target: &ProbeTarget) -> String {
    let m = &target.monitor;
    let default_port = match m.protocol {
        ProbeProtocol::Https => 443,
        _ => 80,
    };
    let port = target
        .connect
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(default_port);
    let host = if target.host.contains(':') && !target.host.starts_with('[') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    if port == default_port || m.host.is_some() {
        host
    } else {
        format!("{host}:{port}")
    }
}
