//! Shared test helpers: real HTTP origins on loopback that tests can break and repair, and
//! the rule for tests that need a tool from Debian's packages.
//!
//! Not for production code. Test-only crates may unwrap: a failed setup is a failed test.

#![allow(clippy::unwrap_used, missing_docs)]

#[cfg(feature = "s3")]
pub mod s3;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Whether CI asked for every peer tool to be present (`TANDEM_CI=1`).
pub fn in_ci() -> bool {
    std::env::var("TANDEM_CI").is_ok_and(|v| v == "1")
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves no
/// process behind. Derefs to the [`std::process::Child`].
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Find a peer tool on PATH. Outside CI a missing tool returns `None` and prints why the
/// test is skipped; in CI it panics, because CI installs every tool the tests use.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    if in_ci() {
        panic!("`{name}` is not installed, and TANDEM_CI=1 requires it (.ci/run installs it)");
    }
    eprintln!(
        "SKIPPED: `{name}` is not installed (install it from Debian's packages to run this test)"
    );
    None
}

struct OriginState {
    name: String,
    health_status: AtomicU16,
    delay_ms: AtomicU64,
    requests: AtomicU64,
}

/// An HTTP origin: answers every path with its name, `/health` with a settable status.
/// It can be stopped (listener and every open connection closed) and started again on the
/// same address, as a region outage and recovery look from outside.
pub struct Origin {
    addr: SocketAddr,
    state: Arc<OriginState>,
    running: Mutex<Option<(CancellationToken, TaskTracker)>>,
}

impl Origin {
    /// Start an origin on `addr` (use port 0 for any port).
    pub async fn start(name: &str, addr: &str) -> Origin {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let o = Origin {
            addr,
            state: Arc::new(OriginState {
                name: name.to_string(),
                health_status: AtomicU16::new(200),
                delay_ms: AtomicU64::new(0),
                requests: AtomicU64::new(0),
            }),
            running: Mutex::new(None),
        };
        o.serve(listener).await;
        o
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Status code `/health` answers with.
    pub fn set_health(&self, status: u16) {
        self.state.health_status.store(status, Ordering::Relaxed);
    }

    /// Delay before every answer.
    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Close the listener and every connection.
    pub async fn stop(&self) {
        if let Some((token, tracker)) = self.running.lock().await.take() {
            token.cancel();
            tracker.close();
            tracker.wait().await;
        }
    }

    /// Listen again on the same address.
    pub async fn restart(&self) {
        self.stop().await;
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener).await;
    }

    async fn serve(&self, listener: TcpListener) {
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let state = self.state.clone();
        let (t, tr) = (token.clone(), tracker.clone());
        tracker.spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = t.cancelled() => return,
                    r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                };
                let state = state.clone();
                let t2 = t.clone();
                tr.spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            state.requests.fetch_add(1, Ordering::Relaxed);
                            let delay = state.delay_ms.load(Ordering::Relaxed);
                            if delay > 0 {
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                            }
                            let (status, body) = if req.uri().path() == "/health" {
                                (
                                    state.health_status.load(Ordering::Relaxed),
                                    "ok\n".to_string(),
                                )
                            } else {
                                (200, format!("{}\n", state.name))
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("x-origin", state.name.as_str())
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
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
        *self.running.lock().await = Some((token, tracker));
    }
}

/// Poll `f` every 10ms until it returns true or `limit` passes; returns the time it took.
pub async fn wait_until(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
