//! A minimal HTTP/1.1 reverse proxy with the WAF in its request path, and a tiny origin:
//! the stand-in `bench/waf/run.sh` uses for the edge until `tandem edge` serves WAF policies.
//! It follows the call sequence the edge uses (docs/waf.md).
//!
//! ```text
//! waf_proxy origin 127.0.0.1:18080
//! waf_proxy proxy 127.0.0.1:18081 127.0.0.1:18080 off|detection|prevention CRS_DIR [PARANOIA]
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tandem_waf::transaction::RequestHead;
use tandem_waf::{Policy, RouteOptions, Verdict, WafMetrics};
use tokio::net::TcpListener;

type Body = Full<Bytes>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // One worker thread: the comparison is per core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("origin") => rt.block_on(origin(args.get(1).ok_or("origin ADDR")?.parse()?)),
        Some("proxy") => {
            let listen: SocketAddr = args.get(1).ok_or("listen")?.parse()?;
            let upstream: SocketAddr = args.get(2).ok_or("origin")?.parse()?;
            let mode = args.get(3).map_or("prevention", String::as_str).to_string();
            let crs = args.get(4).ok_or("CRS_DIR")?.clone();
            let pl = args.get(5).map_or("1", String::as_str).to_string();
            let policy = if mode == "off" {
                None
            } else {
                let src = format!(
                    "[waf.policies.bench]\nmode = \"{mode}\"\ncrs = \"{crs}\"\nparanoia_level = {pl}\n"
                );
                let cfg = tandem_config::parse(&src, "bench.toml")?;
                let p = cfg.waf.ok_or("no waf")?.policies.remove(0);
                Some(Arc::new(Policy::compile(
                    &p,
                    None,
                    None,
                    WafMetrics::default(),
                )?))
            };
            rt.block_on(proxy(listen, upstream, policy))
        }
        _ => Err("usage: waf_proxy origin ADDR | proxy LISTEN ORIGIN MODE CRS_DIR [PL]".into()),
    }
}

async fn origin(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let l = TcpListener::bind(addr).await?;
    loop {
        let (s, _) = l.accept().await?;
        tokio::spawn(async move {
            let svc = service_fn(|req: Request<Incoming>| async move {
                let _ = req.into_body().collect().await;
                Ok::<_, hyper::Error>(
                    Response::builder()
                        .header("content-type", "text/html")
                        .body(Body::from(
                            "<html><body>hello from the origin</body></html>\n",
                        ))
                        .unwrap_or_default(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

async fn proxy(
    addr: SocketAddr,
    upstream: SocketAddr,
    policy: Option<Arc<Policy>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let l = TcpListener::bind(addr).await?;
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    let mut n: u64 = 0;
    loop {
        let (s, peer) = l.accept().await?;
        let client = client.clone();
        let policy = policy.clone();
        n += 1;
        let conn_id = n;
        tokio::spawn(async move {
            let seq = std::sync::atomic::AtomicU64::new(0);
            let svc = service_fn(move |req: Request<Incoming>| {
                let s = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let id = format!("{conn_id:x}-{s:x}");
                handle(req, peer, upstream, client.clone(), policy.clone(), id)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

fn refused(v: &Verdict) -> Response<Body> {
    match v {
        Verdict::Block { status, body, .. } => Response::builder()
            .status(*status)
            .header("content-type", "text/plain")
            .body(Body::from(body.clone())),
        Verdict::Redirect {
            status, location, ..
        } => Response::builder()
            .status(*status)
            .header("location", location.as_str())
            .body(Body::default()),
        _ => Response::builder().status(403).body(Body::default()),
    }
    .unwrap_or_default()
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    upstream: SocketAddr,
    client: Client<HttpConnector, Body>,
    policy: Option<Arc<Policy>>,
    id: String,
) -> Result<Response<Body>, hyper::Error> {
    let (mut parts, body) = req.into_parts();
    // Receive: request line and headers through the WAF before reading the body.
    let mut waf = policy.as_ref().map(|p| {
        p.transaction(
            &RequestHead::from_parts(&parts, peer, id),
            &RouteOptions {
                route: "bench".into(),
                ..RouteOptions::default()
            },
        )
    });
    if let Some(w) = waf.as_mut() {
        let v = w.request_headers();
        if !v.is_continue() {
            return Ok(refused(&v));
        }
    }
    let limit = policy
        .as_ref()
        .map_or(usize::MAX, |p| p.request_body_limit());
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(Response::builder()
                .status(413)
                .body(Body::default())
                .unwrap_or_default());
        }
    };
    if let Some(w) = waf.as_mut()
        && w.wants_request_body()
    {
        let v = w.request_body(&body);
        if !v.is_continue() {
            return Ok(refused(&v));
        }
    }
    // Forward.
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = format!("http://{upstream}{pq}").parse().unwrap_or_default();
    let resp = match client
        .request(Request::from_parts(parts, Body::from(body)))
        .await
    {
        Ok(r) => r,
        Err(_) => {
            return Ok(Response::builder()
                .status(502)
                .body(Body::default())
                .unwrap_or_default());
        }
    };
    let (rparts, rbody) = resp.into_parts();
    let rbytes = rbody.collect().await?.to_bytes();
    if let Some(mut w) = waf {
        let headers: Vec<(Vec<u8>, Vec<u8>)> = rparts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let v = w.response_headers(rparts.status.as_u16(), &headers);
        let _outcome = w.finish();
        if !v.is_continue() {
            return Ok(refused(&v));
        }
    }
    Ok(Response::from_parts(rparts, Body::from(rbytes)))
}
