//! The connection pool to origins: one hyper client for all origins, HTTP/1.1 with keep-alive
//! pooling, TCP_NODELAY and a connect timeout; origins with `tls = true` are reached over
//! rustls, verified against the public web PKI roots plus `origin_ca_file`.

use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tandem_config::edge::EdgeConfig;

use crate::body::BoxBody;
use crate::error::EdgeError;

/// The connector used for origins and probes.
pub type Connector = HttpsConnector<HttpConnector>;
/// The pooled origin client.
pub type OriginClient = Client<Connector, BoxBody>;

/// Build the connector.
pub fn connector(cfg: &EdgeConfig) -> Result<Connector, EdgeError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.timeouts.connect));
    http.set_keepalive(Some(std::time::Duration::from_secs(60)));
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &cfg.origin_ca_file {
        let bad = |reason: String| EdgeError::OriginCa {
            path: path.display().to_string(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| EdgeError::OriginCa {
            path: "<tls>".into(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// Build the pooled client.
pub fn client(cfg: &EdgeConfig, connector: Connector) -> OriginClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(cfg.timeouts.pool_idle)
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}
