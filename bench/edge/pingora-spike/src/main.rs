//! A minimal Pingora reverse proxy for `bench/edge/run.sh`: one origin, plain HTTP/1.1 and
//! TLS (rustls, HTTP/2 and HTTP/1.1 by ALPN), forwarding headers like the nginx and HAProxy
//! configurations of the benchmark (Host kept, X-Forwarded-For and X-Forwarded-Proto set).
//!
//!     pingora-spike ORIGIN PLAIN_ADDR TLS_ADDR CERT KEY [THREADS]

use async_trait::async_trait;
use pingora_core::Result;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::Server;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use pingora_proxy::{ProxyHttp, Session};

struct Spike {
    origin: String,
}

#[async_trait]
impl ProxyHttp for Spike {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _s: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.origin.as_str(),
            false,
            String::new(),
        )))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            req.insert_header("x-forwarded-for", addr.ip().to_string())?;
        }
        let tls = session
            .digest()
            .is_some_and(|d| d.ssl_digest.is_some());
        req.insert_header("x-forwarded-proto", if tls { "https" } else { "http" })?;
        // HTTP/2 requests carry :authority; the origin gets it as Host.
        if req.headers.get("host").is_none()
            && let Some(a) = req.uri.authority().map(|a| a.as_str().to_string())
        {
            req.insert_header("host", a)?;
        }
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: pingora-spike ORIGIN PLAIN_ADDR TLS_ADDR CERT KEY [THREADS]");
        std::process::exit(2);
    }
    let threads = args.get(6).and_then(|t| t.parse().ok()).unwrap_or(1);
    let conf = ServerConf {
        threads,
        // One single-threaded runtime per thread, like Tandem's `--threads 1`.
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = pingora_proxy::http_proxy_service(
        &server.configuration,
        Spike {
            origin: args[1].clone(),
        },
    );
    svc.add_tcp(&args[2]);
    let mut tls = match TlsSettings::intermediate(&args[4], &args[5]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("TLS settings: {e}");
            std::process::exit(2);
        }
    };
    tls.enable_h2();
    svc.add_tls_with_settings(&args[3], None, tls);
    server.add_service(svc);
    server.run_forever();
}
