//! The connection pool to origins: HTTP/1.1 keep-alive connections (TCP_NODELAY, a connect
//! timeout; rustls for origins with `tls = true`, verified against the public web PKI roots
//! plus `origin_ca_file`), one idle stack per origin address.
//!
//! Why not hyper-util's pooled client: that client runs every origin connection in a task of
//! its own and hands each request to it through a channel, so one proxied request costs
//! several task wake-ups and a pool lookup (a mutex and a hashed key) on top of the HTTP work.
//! Here a request checks a connection out of its origin's stack (resolved when the config
//! snapshot is built, so there is no lookup), drives hyper's HTTP/1 client connection in its
//! own task while it waits for the response head, and hands it to the response body
//! ([`PooledBody`]), which keeps driving it while the body streams to the client and puts it
//! back on the stack when the body has ended. WebSocket upgrades are the exception: their
//! connection moves to a task of its own (it never returns to the pool).
//!
//! A connection that the origin closed while it sat idle is noticed at checkout (the
//! connection is polled once; a closed one is dropped); a request that a stale connection
//! refused before sending anything is sent again on a fresh connection, as hyper-util does.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tandem_config::edge::EdgeConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::body::{BoxBody, BoxError};
use crate::error::EdgeError;

/// Idle connections kept per origin.
const MAX_IDLE_PER_ORIGIN: usize = 1024;

/// A TCP or TLS connection to an origin.
pub enum OriginIo {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for OriginIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            OriginIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for OriginIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            OriginIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            OriginIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            OriginIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            OriginIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            OriginIo::Plain(s) => s.is_write_vectored(),
            OriginIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginIo::Plain(s) => Pin::new(s).poll_flush(cx),
            OriginIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            OriginIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Conn = http1::Connection<TokioIo<OriginIo>, BoxBody>;

/// One origin connection: hyper's request handle and the connection it feeds, which whoever
/// holds the lease drives.
pub struct Lease {
    sender: http1::SendRequest<BoxBody>,
    /// `None` once the connection has ended. Boxed (once per connection): a lease moves
    /// from the pool to the request to the response body and back, and hyper's connection
    /// state is about a kilobyte.
    conn: Option<Pin<Box<Conn>>>,
    pool: Arc<OriginPool>,
}

impl Lease {
    /// Poll the connection; `Ready` when it ended (closed, or failed).
    fn poll_conn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.conn.as_mut() {
            None => Poll::Ready(()),
            Some(c) => match c.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(r) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "origin connection ended with an error");
                    }
                    self.conn = None;
                    Poll::Ready(())
                }
            },
        }
    }

    /// Back to the idle stack if the connection is alive and ready for another request.
    fn release(mut self) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        if self.poll_conn(&mut cx).is_pending() && self.sender.is_ready() {
            let pool = self.pool.clone();
            pool.put(self);
        }
    }
}

/// Where an origin is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// `host:port` to connect to.
    pub address: String,
    /// TLS server name, when the origin speaks TLS.
    pub tls: Option<ServerName<'static>>,
}

/// The idle connections of one origin address.
pub struct OriginPool {
    target: Target,
    idle: Mutex<Vec<(Lease, tokio::time::Instant)>>,
}

impl std::fmt::Debug for OriginPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginPool")
            .field("target", &self.target)
            .field("idle", &self.idle_len())
            .finish()
    }
}

impl OriginPool {
    /// An empty pool for `target`.
    pub fn new(target: Target) -> Self {
        OriginPool {
            target,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Idle connections now.
    pub fn idle_len(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    fn take(&self) -> Option<(Lease, tokio::time::Instant)> {
        self.idle.lock().ok()?.pop()
    }

    fn put(&self, lease: Lease) {
        if let Ok(mut v) = self.idle.lock()
            && v.len() < MAX_IDLE_PER_ORIGIN
        {
            v.push((lease, tokio::time::Instant::now()));
        }
    }

    /// Drop connections idle for longer than `max_idle` (the oldest are at the bottom).
    pub fn evict(&self, max_idle: Duration) {
        let now = tokio::time::Instant::now();
        if let Ok(mut v) = self.idle.lock() {
            let keep_from = v
                .iter()
                .position(|(_, since)| now.duration_since(*since) < max_idle)
                .unwrap_or(v.len());
            v.drain(..keep_from);
        }
    }
}

/// Why an attempt got no response head.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// TCP or TLS connect failed or timed out.
    #[error("connect to {address}: {reason}")]
    Connect {
        /// The origin address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl OriginError {
    /// Whether the request never left (connect failure).
    pub fn is_connect(&self) -> bool {
        matches!(self, OriginError::Connect { .. })
    }
}

/// Connects to origins and sends requests over pooled connections.
pub struct OriginClient {
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    http1: http1::Builder,
}

impl std::fmt::Debug for OriginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginClient")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// Build the origin client from the edge config (TLS roots, connect timeout).
pub fn client(cfg: &EdgeConfig) -> Result<OriginClient, EdgeError> {
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
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| EdgeError::OriginCa {
            path: "<tls>".into(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Origins are spoken to in HTTP/1.1 only.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut http1 = http1::Builder::new();
    http1.max_buf_size(1024 * 1024).writev(false);
    Ok(OriginClient {
        tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        connect_timeout: cfg.timeouts.connect,
        http1,
    })
}

/// The pool key and TLS name of an origin address.
pub fn target(address: &str, tls: bool) -> Target {
    let host = match address.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => address,
    };
    Target {
        address: address.to_string(),
        tls: if tls {
            ServerName::try_from(host.to_string()).ok()
        } else {
            None
        },
    }
}

impl OriginClient {
    async fn connect(&self, pool: &Arc<OriginPool>) -> Result<Lease, OriginError> {
        let t = &pool.target;
        let err = |reason: String| OriginError::Connect {
            address: t.address.clone(),
            reason,
        };
        let tcp = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(t.address.as_str()),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(err(e.to_string())),
            Err(_) => return Err(err(format!("timed out after {:?}", self.connect_timeout))),
        };
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(&tcp)
            .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(Duration::from_secs(60)));
        let io = match &t.tls {
            None => OriginIo::Plain(tcp),
            Some(name) => {
                let tls = match tokio::time::timeout(
                    self.connect_timeout,
                    self.tls.connect(name.clone(), tcp),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(err(format!("TLS: {e}"))),
                    Err(_) => {
                        return Err(err(format!(
                            "TLS handshake timed out after {:?}",
                            self.connect_timeout
                        )));
                    }
                };
                OriginIo::Tls(Box::new(tls))
            }
        };
        let (sender, conn) = self
            .http1
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| err(e.to_string()))?;
        Ok(Lease {
            sender,
            conn: Some(Box::pin(conn)),
            pool: pool.clone(),
        })
    }

    /// A live idle connection of `pool`, if there is one.
    fn checkout(&self, pool: &Arc<OriginPool>, cx: &mut Context<'_>) -> Option<Lease> {
        while let Some((mut lease, _)) = pool.take() {
            // An idle connection is only polled here: this notices a close by the origin
            // (the reactor has marked the socket readable) without a system call otherwise.
            if lease.poll_conn(cx).is_pending() && lease.sender.is_ready() {
                return Some(lease);
            }
        }
        None
    }

    /// Send `req` to the origin of `pool` and wait for the response head. The returned lease
    /// must go with the response body ([`PooledBody::new`]); for an upgrade (WebSocket) the
    /// connection is moved to a task of its own instead, so that `hyper::upgrade::on` works.
    pub async fn send(
        &self,
        pool: &Arc<OriginPool>,
        mut req: Request<BoxBody>,
        upgrade: bool,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Result<(Response<Incoming>, Option<Lease>), OriginError> {
        loop {
            let reused = std::future::poll_fn(|cx| Poll::Ready(self.checkout(pool, cx))).await;
            let (mut lease, reused) = match reused {
                Some(l) => (l, true),
                // Connecting (TCP, TLS, handshake) is a big future of its own, boxed so that
                // the common case (a pooled connection) does not carry and move it.
                None => (Box::pin(self.connect(pool)).await?, false),
            };
            if upgrade {
                let Some(conn) = lease.conn.take() else {
                    continue;
                };
                tracker.spawn(async move {
                    if let Err(e) = Pin::into_inner(conn).with_upgrades().await {
                        tracing::debug!(error = %e, "upgraded origin connection ended with an error");
                    }
                });
                let resp = lease.sender.send_request(req).await?;
                return Ok((resp, None));
            }
            let mut fut = std::pin::pin!(lease.sender.try_send_request(req));
            let res = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                    return Poll::Ready(r);
                }
                // Drive the connection (write the request, read the response), then look
                // again: the head may have arrived. A connection that ended has answered the
                // request's callback (or did so when it was dropped, just now).
                let _ = lease.poll_conn(cx);
                fut.as_mut().poll(cx)
            })
            .await;
            match res {
                Ok(resp) => return Ok((resp, Some(lease))),
                Err(mut e) => match e.take_message() {
                    // Never sent on a connection the origin had closed: try a fresh one.
                    Some(r) if reused => req = r,
                    _ => return Err(OriginError::Http(e.into_error())),
                },
            }
        }
    }
}

/// An origin's response body that keeps driving its connection and returns it to the pool
/// once the body has ended.
pub struct PooledBody<B: Body = Incoming> {
    inner: B,
    lease: Option<Lease>,
    ended: bool,
}

impl<B: Body> PooledBody<B> {
    /// Wrap `inner`, the body of the response that came on `lease`.
    pub fn new(inner: B, lease: Option<Lease>) -> Self {
        PooledBody {
            inner,
            lease,
            ended: false,
        }
    }
}

impl<B> Body for PooledBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let r = Pin::new(&mut this.inner).poll_frame(cx);
            match r {
                Poll::Ready(None) => {
                    this.ended = true;
                    if let Some(l) = this.lease.take() {
                        l.release();
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(r)) => return Poll::Ready(Some(r.map_err(Into::into))),
                Poll::Pending => {}
            }
            // The body waits for the connection to read more: drive it. If it ended, the
            // body has been told (data, end or error), so look again.
            match this.lease.as_mut() {
                Some(l) => {
                    if l.poll_conn(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                None => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for PooledBody<B> {
    fn drop(&mut self) {
        // A body the server never polled because it was empty (HEAD, 204, 304, length 0)
        // still leaves a reusable connection; one dropped half-read does not.
        if let Some(l) = self.lease.take()
            && (self.ended || self.inner.is_end_stream())
        {
            l.release();
        }
    }
}
