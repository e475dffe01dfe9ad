//! The demo app each lab region runs: an HTTP server that says which region answered, with a
//! health endpoint. Stopping it closes the listener and every open connection, which is what
//! a region outage looks like from outside.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::RegionService;

/// A region's demo app.
pub struct DemoApp {
    region: String,
    addr: SocketAddr,
    visits: Option<Arc<std::path::PathBuf>>,
    served: Arc<AtomicU64>,
    running: Mutex<Option<(CancellationToken, TaskTracker)>>,
}

impl DemoApp {
    /// Bind and start serving. With `visits`, every request served (but health checks) is
    /// appended to that file: data that changes, for volume replication to carry.
    pub async fn start(
        region: &str,
        addr: SocketAddr,
        visits: Option<std::path::PathBuf>,
    ) -> std::io::Result<Arc<DemoApp>> {
        let app = Arc::new(DemoApp {
            region: region.to_string(),
            addr,
            visits: visits.map(Arc::new),
            served: Arc::new(AtomicU64::new(0)),
            running: Mutex::new(None),
        });
        app.listen().await?;
        Ok(app)
    }

    /// Requests served since start.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    async fn listen(&self) -> std::io::Result<()> {
        let mut guard = self.running.lock().await;
        if guard.is_some() {
            return Ok(());
        }
        // The previous listener's port may linger briefly after a stop.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 25 => {
                    tries += 1;
                    tracing::debug!(error = %e, addr = %self.addr, "rebind retry");
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let region = self.region.clone();
        let served = self.served.clone();
        let visits = self.visits.clone();
        let (t, tr) = (token.clone(), tracker.clone());
        let local = self.addr;
        tracker.spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = t.cancelled() => return,
                    r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                };
                let region = region.clone();
                let served = served.clone();
                let visits = visits.clone();
                let t2 = t.clone();
                tr.spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let region = region.clone();
                        let served = served.clone();
                        let visits = visits.clone();
                        async move {
                            if let Some(file) = visits.as_deref()
                                && req.uri().path() != "/health"
                            {
                                record_visit(file, &region, req.uri().path()).await;
                            }
                            Ok::<_, Infallible>(respond(&req, &region, local, &served))
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = t2.cancelled() => {}
                    }
                });
            }
        });
        *guard = Some((token, tracker));
        Ok(())
    }

    async fn halt(&self) {
        if let Some((token, tracker)) = self.running.lock().await.take() {
            token.cancel();
            tracker.close();
            tracker.wait().await;
        }
    }
}

async fn record_visit(file: &std::path::Path, region: &str, path: &str) {
    use tokio::io::AsyncWriteExt;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let line = format!("{ms} {region} {path}\n");
    let r = async {
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .await?;
        f.write_all(line.as_bytes()).await
    };
    if let Err(e) = r.await {
        tracing::debug!(file = %file.display(), error = %e, "demo app could not record a visit");
    }
}

fn respond(
    req: &Request<hyper::body::Incoming>,
    region: &str,
    addr: SocketAddr,
    served: &AtomicU64,
) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/health" => (200, "ok\n".to_string()),
        _ => {
            served.fetch_add(1, Ordering::Relaxed);
            (200, format!("Hello from {region} (demo app at {addr})\n"))
        }
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-tandem-region", region)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

impl RegionService for DemoApp {
    fn region(&self) -> &str {
        &self.region
    }
    fn describe(&self) -> Vec<(String, String)> {
        vec![("app".into(), format!("http://{}/", self.addr))]
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.halt())
    }
    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.listen()
                .await
                .map_err(|e| format!("demo app {}: {e}", self.addr))
        })
    }
}
