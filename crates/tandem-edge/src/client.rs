//! The connection pool to origins: HTTP/1.1 keep-alive connections (TCP_NODELAY, a connect
//! timeout; rustls for origins with `tls = true`, verified against the public web PKI roots
//! plus `origin_ca_file`), one idle stack per origin address.
//!
//! Why not hyper's client: hyper-util's pooled client runs every origin connection in a task
//! of its own and hands each request to it through a channel, and even hyper's bare
//! connection sends each request through its dispatch channel and back through a oneshot.
//! Here a request checks a connection out of its origin's stack (resolved when the config
//! snapshot is built, so there is no lookup), writes the head ([`crate::h1`]) and the body in
//! its own task while it waits for the response head, and hands the connection to the
//! response body ([`PooledBody`]), which reads the body from it and puts it back on the stack
//! when the body has ended. WebSocket upgrades are the exception: they go over a fresh
//! connection through hyper's client, which moves to a task of its own and never returns to
//! the pool.
//!
//! A connection that the origin closed while it sat idle is noticed at checkout (the socket
//! is polled once; a closed one is dropped). One that closes as the request goes out (the
//! keep-alive race) gets the request again on a fresh connection when that is safe: nothing
//! came back, and either the head never left whole or the method is idempotent and no body
//! byte was taken.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response};
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
use crate::h1::{self, Framing, Parsed, ProtocolError, RequestFraming, Step};

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

/// One idle or leased origin connection, with its read buffer (bytes after a response stay
/// there for the next) and write buffer (reused for every request head).
pub struct Conn {
    io: OriginIo,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    wpos: usize,
    pool: Arc<OriginPool>,
}

/// Read buffer capacity reserved when the buffer runs low.
const READ_CHUNK: usize = 16 * 1024;

/// Request bytes gathered before a write: a body's frames that are ready join the head (or
/// each other) in one write up to this much.
const WRITE_FILL: usize = 64 * 1024;

impl Conn {
    fn new(io: OriginIo, pool: Arc<OriginPool>) -> Self {
        Conn {
            io,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
            wpos: 0,
            pool,
        }
    }

    /// Read what the socket has into the read buffer; `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf)
    }

    /// Write the write buffer out; `Ready(Ok)` when all of it has left.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            let n =
                std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wpos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
        }
        self.wbuf.clear();
        self.wpos = 0;
        Poll::Ready(Ok(()))
    }

    /// Whether an idle connection is still usable: nothing arrived and the origin did not
    /// close it (the reactor knows; no system call unless the socket became readable).
    fn is_idle_alive(&mut self, cx: &mut Context<'_>) -> bool {
        self.rbuf.is_empty() && self.poll_fill(cx).is_pending()
    }

    /// Back to the idle stack of its origin.
    fn release(self) {
        let pool = self.pool.clone();
        pool.put(self);
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
    idle: Mutex<Vec<(Conn, tokio::time::Instant)>>,
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

    fn take(&self) -> Option<(Conn, tokio::time::Instant)> {
        self.idle.lock().ok()?.pop()
    }

    fn put(&self, conn: Conn) {
        if let Ok(mut v) = self.idle.lock()
            && v.len() < MAX_IDLE_PER_ORIGIN
        {
            v.push((conn, tokio::time::Instant::now()));
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
    /// Reading from or writing to the origin failed.
    #[error("origin connection: {0}")]
    Io(#[source] io::Error),
    /// The origin closed the connection before a whole response head.
    #[error("origin closed the connection before a response")]
    Closed,
    /// The origin's response could not be read as HTTP/1.1.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The client's request body failed while it was being sent.
    #[error("request body")]
    Body(#[source] BoxError),
    /// The request body did not match its `Content-Length`.
    #[error("request body is {0} than its Content-Length")]
    BodyLength(&'static str),
    /// The request could not be written as HTTP/1.1 (its `Content-Length` fields).
    #[error(transparent)]
    Request(ProtocolError),
    /// The HTTP exchange of an upgrade (hyper's client) failed.
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

/// A failed exchange, and whether it failed the way a connection the origin had already
/// closed fails (nothing came back), so the request may go again on a fresh connection.
struct Failure {
    error: OriginError,
    stale: bool,
}

/// One request on one connection, up to the response head: writes the head and streams the
/// body while it watches for the response (an origin may answer before the body is done).
struct Exchange {
    conn: Conn,
    body: BoxBody,
    framing: RequestFraming,
    /// Body bytes taken so far.
    sent: u64,
    /// All of the body is in the write buffer (or there is none).
    body_done: bool,
    /// All of the request has left.
    write_done: bool,
    /// A frame was taken from the body (it cannot be sent again unless replayable).
    body_touched: bool,
    /// The head left completely.
    head_written: bool,
    /// Any response bytes arrived.
    got_bytes: bool,
}

impl Exchange {
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        head_request: bool,
    ) -> Poll<Result<h1::ResponseHead, Failure>> {
        if !self.write_done
            && let Poll::Ready(Err(f)) = self.poll_write(cx)
        {
            return Poll::Ready(Err(f));
        }
        loop {
            if !self.conn.rbuf.is_empty() {
                self.got_bytes = true;
                match h1::parse_response(&mut self.conn.rbuf, head_request) {
                    Ok(Parsed::Head(h)) => return Poll::Ready(Ok(h)),
                    Ok(Parsed::Interim) => continue,
                    Ok(Parsed::Partial) => {}
                    Err(e) => {
                        return Poll::Ready(Err(Failure {
                            error: e.into(),
                            stale: false,
                        }));
                    }
                }
            }
            let stale = !self.got_bytes;
            match std::task::ready!(self.conn.poll_fill(cx)) {
                Ok(0) => {
                    return Poll::Ready(Err(Failure {
                        error: OriginError::Closed,
                        stale,
                    }));
                }
                Ok(_) => {}
                Err(e) => {
                    return Poll::Ready(Err(Failure {
                        error: OriginError::Io(e),
                        stale,
                    }));
                }
            }
        }
    }

    /// Move the request out: fill the write buffer with what the body has ready, drain it,
    /// until the socket or the body has nothing more for now. `Ready(Ok)` once all of it has
    /// left. Filling comes first, so the head and a body that is already here (a small one
    /// the client sent with its head) leave in one write.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        loop {
            let mut body_waits = false;
            if !self.body_done && self.conn.wbuf.len() - self.conn.wpos < WRITE_FILL {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(frame) => {
                        if let Err(error) = self.take(frame) {
                            return Poll::Ready(Err(Failure {
                                error,
                                stale: false,
                            }));
                        }
                        continue;
                    }
                    Poll::Pending => body_waits = true,
                }
            }
            if let Err(e) = std::task::ready!(self.conn.poll_drain(cx)) {
                return Poll::Ready(Err(Failure {
                    error: OriginError::Io(e),
                    stale: !self.got_bytes,
                }));
            }
            self.head_written = true;
            if self.body_done {
                self.write_done = true;
                return Poll::Ready(Ok(()));
            }
            if body_waits {
                return Poll::Pending;
            }
        }
    }

    /// Put what the body gave into the write buffer, framed.
    fn take(&mut self, frame: Option<Result<Frame<Bytes>, BoxError>>) -> Result<(), OriginError> {
        match frame {
            None => {
                if let RequestFraming::Length(n) = self.framing
                    && self.sent < n
                {
                    return Err(OriginError::BodyLength("shorter"));
                }
                if self.framing == RequestFraming::Chunked {
                    h1::encode_last_chunk(&mut self.conn.wbuf, None);
                }
                self.body_done = true;
            }
            Some(Err(e)) => return Err(OriginError::Body(e)),
            Some(Ok(frame)) => {
                self.body_touched = true;
                match frame.into_data() {
                    Ok(d) => {
                        self.sent += d.len() as u64;
                        match self.framing {
                            RequestFraming::Chunked => h1::encode_chunk(&mut self.conn.wbuf, &d),
                            RequestFraming::Length(n) if self.sent > n => {
                                return Err(OriginError::BodyLength("longer"));
                            }
                            _ => self.conn.wbuf.extend_from_slice(&d),
                        }
                    }
                    Err(frame) => {
                        // Trailers end a chunked body; a length-delimited body has no
                        // place for them (hyper drops them too).
                        if let (Ok(t), RequestFraming::Chunked) =
                            (frame.into_trailers(), self.framing)
                        {
                            h1::encode_last_chunk(&mut self.conn.wbuf, Some(&t));
                            self.body_done = true;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl OriginClient {
    async fn connect_io(&self, t: &Target) -> Result<OriginIo, OriginError> {
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
        Ok(match &t.tls {
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
        })
    }

    /// A live idle connection of `pool`, if there is one.
    fn checkout(&self, pool: &Arc<OriginPool>, cx: &mut Context<'_>) -> Option<Conn> {
        while let Some((mut conn, _)) = pool.take() {
            if conn.is_idle_alive(cx) {
                return Some(conn);
            }
        }
        None
    }

    /// Send `req`, with `added`'s `Host` and fields, to the origin of `pool` and wait for the
    /// response head. The connection
    /// travels with the response body ([`PooledBody`]) and returns to the pool when the body
    /// has ended. An upgrade (WebSocket) goes over a fresh connection through hyper's client,
    /// whose connection moves to a task of its own so that `hyper::upgrade::on` works.
    ///
    /// A pooled connection that turns out closed (nothing comes back, and the request either
    /// never left whole or is idempotent with its body untouched) is replaced by another and
    /// the request sent again, as hyper-util's pool does; when not a byte of it had left,
    /// the same bytes go on the new connection, with the rest of the body after them.
    pub async fn send(
        &self,
        pool: &Arc<OriginPool>,
        mut req: Request<BoxBody>,
        added: h1::Added<'_>,
        upgrade: bool,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Result<Response<PooledBody>, OriginError> {
        if upgrade {
            // hyper's client writes the head: the added fields go into the request's map.
            let h = req.headers_mut();
            if let Some(host) = added.host {
                h.insert(http::header::HOST, host.clone());
            }
            for (name, value) in added.fields {
                h.insert(name.clone(), value.clone());
            }
            return Box::pin(self.send_upgrade(pool, req, tracker)).await;
        }
        let (parts, body) = req.into_parts();
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let head_request = parts.method == Method::HEAD;
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        let mut body = body;
        loop {
            let (mut conn, mut reused) = self.conn_for(pool).await?;
            let empty = body.is_end_stream();
            let framing = match h1::encode_request_head(
                &mut conn.wbuf,
                &parts.method,
                pq,
                &parts.headers,
                added,
                empty,
                body.size_hint().exact(),
            ) {
                Ok(f) => f,
                Err(e) => {
                    conn.wbuf.clear();
                    conn.release();
                    return Err(OriginError::Request(e));
                }
            };
            let mut ex = Exchange {
                conn,
                body,
                framing,
                sent: 0,
                body_done: framing == RequestFraming::None,
                write_done: false,
                body_touched: false,
                head_written: false,
                got_bytes: false,
            };
            loop {
                match std::future::poll_fn(|cx| ex.poll_head(cx, head_request)).await {
                    Ok(head) => return Ok(PooledBody::response(ex, head)),
                    Err(f) if reused && f.stale && ex.conn.wpos == 0 && !ex.head_written => {
                        tracing::debug!(error = %f.error, "pooled origin connection was closed before the request left; sending it on another");
                        let (mut fresh, r) = self.conn_for(pool).await?;
                        fresh.wbuf = std::mem::take(&mut ex.conn.wbuf);
                        ex.conn = fresh;
                        reused = r;
                    }
                    Err(f)
                        if reused
                            && f.stale
                            && !ex.body_touched
                            && (idempotent || !ex.head_written) =>
                    {
                        tracing::debug!(error = %f.error, "pooled origin connection was closed; sending again on a fresh one");
                        break;
                    }
                    Err(f) => return Err(f.error),
                }
            }
            body = ex.body;
        }
    }

    /// A pooled connection to the origin if one is alive, else a new one; and whether it
    /// was pooled.
    async fn conn_for(&self, pool: &Arc<OriginPool>) -> Result<(Conn, bool), OriginError> {
        let pooled = std::future::poll_fn(|cx| Poll::Ready(self.checkout(pool, cx))).await;
        Ok(match pooled {
            Some(c) => (c, true),
            // Connecting (TCP, TLS) is a big future of its own, boxed so that the common
            // case (a pooled connection) does not carry and move it.
            None => (
                Conn::new(Box::pin(self.connect_io(&pool.target)).await?, pool.clone()),
                false,
            ),
        })
    }

    async fn send_upgrade(
        &self,
        pool: &Arc<OriginPool>,
        req: Request<BoxBody>,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Result<Response<PooledBody>, OriginError> {
        let io = self.connect_io(&pool.target).await?;
        let (mut sender, conn) = self.http1.handshake(TokioIo::new(io)).await?;
        tracker.spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upgraded origin connection ended with an error");
            }
        });
        let resp = sender.send_request(req).await?;
        Ok(resp.map(|b| PooledBody(BodyState::Hyper(b))))
    }
}

/// An origin's response body. It reads from the connection the response came on and puts
/// the connection back on its origin's idle stack once the body has ended (when the
/// connection may carry another request); a body dropped half-read closes it.
pub struct PooledBody(BodyState);

enum BodyState {
    H1(H1Body),
    /// An upgrade's response, from hyper's client.
    Hyper(Incoming),
}

struct H1Body {
    /// `None` once the body has ended or failed.
    conn: Option<Conn>,
    framing: Framing,
    chunked: h1::Chunked,
    /// The connection may carry another request after this body.
    reuse: bool,
}

impl PooledBody {
    fn response(ex: Exchange, head: h1::ResponseHead) -> Response<PooledBody> {
        // A response that came before the whole request left ends the connection: the rest
        // of the request body is not sent.
        let mut body = H1Body {
            conn: Some(ex.conn),
            framing: head.framing,
            chunked: h1::Chunked::default(),
            reuse: head.keep_alive && ex.write_done,
        };
        if matches!(body.framing, Framing::Empty | Framing::Length(0)) {
            body.finish();
        }
        Response::from_parts(head.parts, PooledBody(BodyState::H1(body)))
    }
}

impl H1Body {
    /// The body has ended: the connection goes back to the pool if it may.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reuse
            && conn.rbuf.is_empty()
        {
            conn.release();
        }
    }

    fn fail(&mut self, e: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(e.into())))
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match self.framing {
                Framing::Empty | Framing::Length(0) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) => {
                    if !conn.rbuf.is_empty() {
                        let take = left.min(conn.rbuf.len() as u64);
                        let data = conn.rbuf.split_to(take as usize).freeze();
                        self.framing = Framing::Length(left - take);
                        if take == left {
                            self.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::Chunked => match self.chunked.decode(&mut conn.rbuf) {
                    Ok(Step::Data(d)) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                    Ok(Step::Trailers(t)) => {
                        // The trailers end the body; the server may not poll again.
                        self.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Step::End) => {
                        self.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::NeedMore) => {}
                    Err(e) => return self.fail(e),
                },
                Framing::Close => {
                    if !conn.rbuf.is_empty() {
                        let data = conn.rbuf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match std::task::ready!(conn.poll_fill(cx)) {
                // A body read to the close ends there. Over TLS, an origin that closes without
                // close_notify surfaces as UnexpectedEof; it ends the body too, as nginx has it
                // (many servers skip close_notify; a truncation cannot be told either way).
                Ok(0) if self.framing == Framing::Close => {
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Err(e)
                    if self.framing == Framing::Close
                        && e.kind() == io::ErrorKind::UnexpectedEof =>
                {
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return self.fail(OriginError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "origin closed the connection before the end of the body",
                    )));
                }
                Ok(_) => {}
                Err(e) => return self.fail(OriginError::Io(e)),
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            BodyState::H1(b) => b.poll_frame(cx),
            BodyState::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyState::H1(b) => {
                b.conn.is_none() || matches!(b.framing, Framing::Empty | Framing::Length(0))
            }
            BodyState::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyState::H1(b) => match b.framing {
                Framing::Empty => SizeHint::with_exact(0),
                Framing::Length(n) => SizeHint::with_exact(n),
                _ => SizeHint::default(),
            },
            BodyState::Hyper(b) => b.size_hint(),
        }
    }
}
