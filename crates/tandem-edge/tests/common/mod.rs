//! Test harness: real origins (tokio + hyper on loopback), a test CA issuing certificates,
//! an edge started from config text, and clients.
#![allow(dead_code, missing_docs, unreachable_pub, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tandem_edge::{Edge, EdgeOptions, Listeners};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).boxed()
}

/// A test origin: answers with its name, echoes what it received, and can be killed.
pub struct Origin {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    cancel: CancellationToken,
}

impl Origin {
    pub async fn start(name: &str) -> Origin {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr) -> Origin {
        let listener = TcpListener::bind(addr).await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let hits = Arc::new(AtomicU64::new(0));
        let (n, c, h) = (name.to_string(), cancel.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = c.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let (n, c, h) = (n.clone(), c.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        h.fetch_add(1, Ordering::Relaxed);
                        origin_handler(n.clone(), req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades();
                    // Killing the origin drops its connections mid-flight, like a dead host.
                    tokio::select! {
                        _ = c.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        });
        Origin {
            name: name.to_string(),
            addr,
            hits,
            cancel,
        }
    }

    pub fn kill(&self) {
        self.cancel.cancel();
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

async fn origin_handler(
    name: String,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let mut b = Response::builder().header("x-origin", &name);
    if hyper_util_is_upgrade(&req) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        return Ok(b
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(full(""))
            .unwrap());
    }
    if path == "/health" {
        return Ok(b.body(full("ok")).unwrap());
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap_or(500);
        return Ok(b.status(code).body(full(format!("{name} {code}"))).unwrap());
    }
    if let Some(n) = path.strip_prefix("/big/") {
        // `n` bytes of a repeating pattern, with a Content-Length.
        let n: usize = n.parse().unwrap_or(1 << 20);
        let body: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
        return Ok(b.body(full(body)).unwrap());
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(100);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(b.body(full(format!("{name} slow"))).unwrap());
    }
    // `/stream` or `/stream/<chunks>/<ms between chunks>`.
    if let Some(spec) = path.strip_prefix("/stream") {
        let mut it = spec.trim_start_matches('/').split('/');
        let n: usize = it.next().and_then(|v| v.parse().ok()).unwrap_or(5);
        let ms: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(10);
        let chunks =
            (0..n).map(|i| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("chunk{i};")))));
        let s = futures::stream::iter(chunks).then(move |c| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            c
        });
        return Ok(b.body(BodyExt::boxed(StreamBody::new(s))).unwrap());
    }
    // Echo: method, URI and headers as JSON, plus the body length.
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).to_string(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    b = b.header("content-type", "application/json");
    let json = serde_json::json!({
        "origin": name,
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "body_len": body.len(),
        "body_head": String::from_utf8_lossy(&body[..body.len().min(64)]),
    });
    Ok(b.body(full(json.to_string())).unwrap())
}

use futures::StreamExt;

/// A raw TCP origin on loopback for tests that need exact bytes or odd behaviour: `serve`
/// runs for every accepted connection, in a task of its own. Returns the address.
pub async fn raw_origin<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

fn hyper_util_is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers().contains_key("upgrade")
}

/// A test certificate authority and the certificates it issued, as files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
}

pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Tandem test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca_pem: ca.pem(),
            ca_params,
            ca_key,
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        let p = self.dir.path().join("ca.pem");
        std::fs::write(&p, &self.ca_pem).unwrap();
        p
    }

    /// Issue a certificate for `names` into `<file>.crt`/`<file>.key`.
    pub fn issue(&self, file: &str, names: &[&str]) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let cp = self.dir.path().join(format!("{file}.crt"));
        let kp = self.dir.path().join(format!("{file}.key"));
        write_atomic(&cp, cert.pem().as_bytes());
        write_atomic(&kp, key.serialize_pem().as_bytes());
        Issued {
            cert: cp,
            key: kp,
            der: cert.der().to_vec(),
        }
    }
}

fn write_atomic(p: &Path, data: &[u8]) {
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, p).unwrap();
}

/// A running edge.
pub struct TestEdge {
    pub edge: Edge,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub cancel: CancellationToken,
    pub done: tokio::task::JoinHandle<()>,
    pub pki: Arc<Pki>,
    pub registry: Arc<prometheus_client::registry::Registry>,
}

pub const REGIONS: &str = r#"
[regions.eastus]
pair = "westus"
[regions.westus]
pair = "eastus"
"#;

impl TestEdge {
    /// Start an edge for `eastus` from the `[edge]` body (routes, groups, rules...). The
    /// harness adds regions, listeners on 127.0.0.1:0 and the certificates of `certs`
    /// (`(file, names)`; the first is the default certificate).
    pub async fn start(edge_toml: &str, certs: &[(&str, &[&str])]) -> TestEdge {
        Self::start_with(edge_toml, certs, |o| o).await
    }

    pub async fn start_with(
        edge_toml: &str,
        certs: &[(&str, &[&str])],
        opts: impl FnOnce(EdgeOptions) -> EdgeOptions,
    ) -> TestEdge {
        let pki = Arc::new(Pki::new());
        let mut cert_toml = String::new();
        for (file, names) in certs {
            let i = pki.issue(file, names);
            cert_toml.push_str(&format!(
                "[[edge.certificates]]\ndomains = {:?}\ncert = {:?}\nkey = {:?}\n\n",
                names,
                i.cert.display().to_string(),
                i.key.display().to_string()
            ));
        }
        let text = format!(
            "{REGIONS}\n[edge]\naccess_log = false\ncert_reload_interval = \"100ms\"\n{edge_toml}\n\n[edge.instances.eastus]\nhttps = [\"127.0.0.1:0\"]\nhttp = [\"127.0.0.1:0\"]\n\n{cert_toml}"
        );
        let cfg = tandem_config::parse(&text, "test.toml")
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{text}"));
        let mut registry = prometheus_client::registry::Registry::default();
        let edge = Edge::new(&cfg, opts(EdgeOptions::new("eastus")), &mut registry).expect("edge");
        let listeners: Listeners = edge.bind().await.expect("bind");
        let https = listeners.https_addrs()[0];
        let http = listeners.http_addrs()[0];
        let cancel = CancellationToken::new();
        let (e2, c2) = (edge.clone(), cancel.clone());
        let done = tokio::spawn(async move { e2.run(listeners, c2).await });
        TestEdge {
            edge,
            https,
            http,
            cancel,
            done,
            pki,
            registry: Arc::new(registry),
        }
    }

    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }

    /// A reqwest client that resolves every name in `names` to the edge and trusts the CA.
    pub fn client(&self, names: &[&str]) -> reqwest::Client {
        self.client_builder(names).build().unwrap()
    }

    pub fn client_builder(&self, names: &[&str]) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.pki.ca_pem.as_bytes()).unwrap(),
            );
        for n in names {
            b = b.resolve(n, self.https);
        }
        b
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https.port())
    }

    pub fn http_url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.http.port())
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.done).await;
    }
}

/// Send raw bytes to an address and read the answer until the peer closes or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// A hyper client, for cases reqwest hides.
pub fn hyper_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new())
}

pub async fn json(r: reqwest::Response) -> serde_json::Value {
    let t = r.text().await.unwrap();
    serde_json::from_str(&t).unwrap_or_else(|_| panic!("not JSON: {t}"))
}

pub fn header<'a>(j: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    j["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
}

/// A TLS client verifier that accepts any certificate (raw-socket tests).
#[derive(Debug)]
pub struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
