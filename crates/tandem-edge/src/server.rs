//! Listeners and connections (mini-redis shape): an accept loop per listener bounded by a
//! semaphore, a task per connection, TLS with a handshake deadline, HTTP/1.1 or HTTP/2 by
//! ALPN (or the HTTP/2 preface on plain connections), and graceful shutdown that stops
//! accepting, asks every connection to finish its in-flight requests and waits up to the
//! drain timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::Inner;
use crate::body::ClientBody;
use crate::error::EdgeError;
use crate::h1_server::{self, Ended, Rewound};
use crate::headers::ClientNode;
use crate::proxy::{ConnInfo, Scheme};
use crate::stop::Stop;
use crate::watch::{ClientIo, LastWords, Watch, Watched};

/// Bind a listener with SO_REUSEADDR and a deep backlog.
pub(crate) fn bind(addr: SocketAddr) -> Result<TcpListener, EdgeError> {
    let err = |source| EdgeError::Bind { addr, source };
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    sock.set_nonblocking(true).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    sock.listen(4096).map_err(err)?;
    TcpListener::from_std(sock.into()).map_err(err)
}

/// hyper's connection builders, made once per listener: the automatic one (plain
/// connections, which may turn out to be HTTP/2 with prior knowledge) and the two that ALPN
/// picks on TLS connections.
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(inner: &Inner) -> Self {
        let auto = builder(inner);
        Self {
            h1: auto.clone().http1_only(),
            h2: auto.clone().http2_only(),
            auto,
        }
    }
}

fn builder(inner: &Inner) -> auto::Builder<TokioExecutor> {
    let snap = inner.snapshot.load();
    let l = &snap.cfg.limits;
    let t = &snap.cfg.timeouts;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // hyper refuses buffers under 8KiB; the exact limit is enforced per request (431).
        .max_buf_size(l.max_header_bytes.max(8192) + 1024)
        .max_headers(l.max_headers)
        // The head deadline is the connection's Watch (one timer per connection, not one
        // per request); hyper would otherwise default to a 30 s timer per request.
        .header_read_timeout(None)
        // One buffer per write: the head and a small body leave in one copy and one iovec
        // instead of a queue of buffers (measured: less CPU per request on small answers).
        .writev(false)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(l.max_concurrent_streams)
        .max_header_list_size(l.max_header_bytes as u32)
        .keep_alive_interval(Some(t.idle / 2))
        .keep_alive_timeout(t.idle / 2);
    b
}

pub(crate) async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    stop: Arc<Stop>,
) {
    let local = listener.local_addr().ok();
    let max = inner.snapshot.load().cfg.limits.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let builders = Arc::new(Builders::new(&inner));
    tracing::info!(listen = ?local, tls = tls.is_some(), "edge listening");
    loop {
        let permit = tokio::select! {
            () = stop.wait() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = stop.wait() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let inner2 = inner.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        let builders = builders.clone();
        // Boxed: tokio moves a spawned future several times (into the task cell, out of it
        // when it ends); as a box only a pointer moves. The future is still built here and
        // copied into its box once, so what it holds inline is kept small: the TLS path and
        // hyper's server are boxed apart further down (a release build's connection future
        // went from 21.6 KB to 4.9 KB). Under `Connection: close` load these copies were a
        // tenth of the edge's CPU (memmove).
        inner.tracker.spawn(Box::pin(async move {
            inner2.metrics.connections.inc();
            serve_connection(&inner2, &builders, stream, peer, tls, &stop).await;
            inner2.metrics.connections.dec();
            drop(permit);
        }));
    }
}

async fn serve_connection(
    inner: &Arc<Inner>,
    builders: &Builders,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    stop: &Stop,
) {
    let _ = stream.set_nodelay(true);
    let times = ConnTimes::now(inner);
    match tls {
        // Boxed apart: a TLS connection's states (the handshake, the h2 server) would
        // otherwise size every connection's future, plain ones too, and the future is
        // copied whole when it is spawned.
        Some(acceptor) => {
            let tls = serve_tls(inner, builders, acceptor, stream, peer, times, stop);
            Box::pin(tls).await;
        }
        None => {
            let info = ConnInfo {
                client: peer,
                scheme: Scheme::Http,
                node: Arc::new(ClientNode::new(peer)),
                watch: times.watch(inner),
            };
            let io = ClientIo::new(stream, info.watch.clone());
            serve_h1(inner, &builders.auto, io, info, stop, times.drain).await;
        }
    }
}

/// A connection's timeouts, read from the configuration once when it is accepted.
#[derive(Clone, Copy)]
struct ConnTimes {
    /// For the TLS handshake and each request head.
    header: std::time::Duration,
    /// From a request to its response's head.
    first_byte: std::time::Duration,
    /// How long shutdown waits for the connection's requests.
    drain: std::time::Duration,
}

impl ConnTimes {
    fn now(inner: &Inner) -> Self {
        let s = inner.snapshot.load();
        let t = &s.cfg.timeouts;
        ConnTimes {
            header: t.client_header,
            first_byte: t.first_byte,
            drain: t.drain,
        }
    }

    /// The connection's deadlines, started now.
    fn watch(&self, inner: &Inner) -> Arc<Watch> {
        Watch::new(inner.clock, self.header, self.first_byte)
    }
}

/// A TLS connection: the handshake, then HTTP/2 or HTTP/1.1 as ALPN chose.
async fn serve_tls(
    inner: &Arc<Inner>,
    builders: &Builders,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    times: ConnTimes,
    stop: &Stop,
) {
    let watch = times.watch(inner);
    let tls_stream = tokio::select! {
        () = stop.wait() => return,
        r = tokio::time::timeout(times.header, acceptor.accept(stream)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                inner.metrics.tls_failures.inc();
                tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                inner.metrics.tls_failures.inc();
                tracing::debug!(client = %peer, "TLS handshake timed out");
                return;
            }
        },
    };
    let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        watch.set_h2();
    }
    let info = ConnInfo {
        client: peer,
        scheme: Scheme::Https,
        node: Arc::new(ClientNode::new(peer)),
        watch,
    };
    if h2 {
        let io = TokioIo::new(tls_stream);
        drive(inner, &builders.h2, io, info, stop, times.drain).await;
    } else {
        let io = ClientIo::new(tls_stream, info.watch.clone());
        serve_h1(inner, &builders.h1, io, info, stop, times.drain).await;
    }
}

/// An HTTP/1 connection: the edge's own server first ([`crate::h1_server`]), hyper's
/// `builder` (which also detects the HTTP/2 preface on plain connections) from the first
/// request that needs it.
async fn serve_h1<S>(
    inner: &Arc<Inner>,
    builder: &auto::Builder<TokioExecutor>,
    io: ClientIo<S>,
    info: ConnInfo,
    stop: &Stop,
    drain: std::time::Duration,
) where
    S: LastWords + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = info.client;
    let ended = {
        let own = Watched::new(h1_server::serve(inner, &info, io, stop), info.watch.clone());
        tokio::pin!(own);
        tokio::select! {
            biased;
            r = own.as_mut() => r,
            () = stop.wait() => match tokio::time::timeout(drain, own.as_mut()).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(client = %client, "connection still busy after the drain timeout; closing it");
                    return;
                }
            },
        }
    };
    match ended {
        None => tracing::debug!(client = %client, "no request head in time; connection closed"),
        Some(Ended::Closed) => {}
        Some(Ended::Handover(io, read)) => {
            let io = TokioIo::new(Rewound::new(io, read));
            // Boxed apart: hyper's server is the rare path here (a chunked or large body, an
            // upgrade, HTTP/1.0, the HTTP/2 preface), and inline its state would size every
            // connection's future.
            Box::pin(drive(inner, builder, io, info, stop, drain)).await;
        }
    }
}

async fn drive<I>(
    inner: &Arc<Inner>,
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    info: ConnInfo,
    stop: &Stop,
    drain: std::time::Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let inner2 = inner.clone();
    let client = info.client;
    let watch = info.watch.clone();
    let service = service_fn(move |req: http::Request<Incoming>| {
        let req = req.map(ClientBody::Hyper);
        crate::proxy::handle(inner2.clone(), info.clone(), req)
    });
    let conn = Watched::new(builder.serve_connection_with_upgrades(io, service), watch);
    tokio::pin!(conn);
    // Biased: the connection is polled first and the stop signal only when the connection
    // is pending (the common case pays one branch fewer per wake-up).
    tokio::select! {
        biased;
        r = conn.as_mut() => match r {
            Some(Err(e)) => {
                tracing::debug!(client = %client, error = %e, "connection ended with an error");
            }
            None => tracing::debug!(client = %client, "no request head in time; connection closed"),
            Some(Ok(())) => {}
        },
        () = stop.wait() => {
            conn.as_mut().conn().graceful_shutdown();
            match tokio::time::timeout(drain, conn.as_mut()).await {
                Ok(_) => {}
                Err(_) => tracing::warn!(client = %client, "connection still busy after the drain timeout; closing it"),
            }
        }
    }
}
