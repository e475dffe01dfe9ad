//! The edge's HTTP/2 server: the h2 crate's connection, driven from the connection's own
//! task, with every stream's request handled in that task too (a [`FuturesUnordered`] of
//! streams next to the connection), instead of hyper's server, which spawns a task per
//! stream and takes a mutex per frame for its keep-alive bookkeeping.
//!
//! What it keeps from hyper's server: the same h2 settings (1 MiB windows, 16 KiB frames,
//! 400 KiB send buffer, the configured stream and header-list limits), connection-specific
//! response headers stripped, `Date` added when missing, `Content-Length` from an exact body
//! size, a client's `RST_STREAM` cancelling the request it resets (the origin exchange is
//! dropped), request bodies streamed with their window released as the proxy reads them,
//! response bodies sent as the client's window allows, trailers passed on, keep-alive pings
//! (a connection that leaves a ping unanswered for `idle / 2` is closed), and graceful
//! shutdown (GOAWAY, in-flight streams finish within the drain timeout).
//!
//! Why: under h2load the task per stream (spawn, schedule, wake, and its join bookkeeping)
//! and hyper's per-stream glue were about 6% of the edge's CPU per request
//! (docs/ARCHITECTURE.md, "Edge data path").

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::{Ping, Reason, RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::Inner;
use crate::body::{BoxBody, ClientBody, H2Body};
use crate::proxy::ConnInfo;

/// hyper's defaults for its HTTP/2 server, kept.
const CONN_WINDOW: u32 = 1024 * 1024;
const STREAM_WINDOW: u32 = 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// The start of the connection preface: a plain connection that opens with it speaks
/// HTTP/2 with prior knowledge (h2 checks the rest of the preface).
pub(crate) const PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// Serve HTTP/2 on `io` until the client closes, an error ends the connection, or (after
/// `cancel`) the in-flight streams finish or `drain` passes.
pub(crate) async fn serve<S>(
    inner: &Arc<Inner>,
    info: ConnInfo,
    io: S,
    cancel: &CancellationToken,
    drain: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (handshake_timeout, ping_every, max_streams, max_header_list) = {
        let snap = inner.snapshot.load();
        let (l, t) = (&snap.cfg.limits, &snap.cfg.timeouts);
        (
            t.client_header,
            t.idle / 2,
            l.max_concurrent_streams,
            l.max_header_bytes as u32,
        )
    };
    let client = info.client;
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(max_header_list)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_streams(max_streams);
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut conn = tokio::select! {
        biased;
        r = tokio::time::timeout(handshake_timeout, handshake) => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(client = %client, error = %e, "HTTP/2 handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(client = %client, "no HTTP/2 preface in time; connection closed");
                return;
            }
        },
        () = cancel.cancelled() => return,
    };
    let mut pings = conn.ping_pong();
    let mut ping_out = false;
    let mut ping_timer = pin!(tokio::time::sleep(ping_every));
    let mut streams = FuturesUnordered::new();
    let mut stop = pin!(cancel.cancelled());
    let mut drain_timer = pin!(tokio::time::sleep(Duration::MAX));
    let mut draining = false;
    let mut may_yield = true;
    loop {
        tokio::select! {
            biased;
            ended = poll_fn(|cx| poll_conn(&mut conn, &mut streams, &mut may_yield, cx, |req, respond| {
                // A stream's work per poll is bounded (h2's send buffer, the windows), and
                // the streams would otherwise share one task's cooperative budget: once it
                // ran out, every other stream's poll in that pass would be wasted.
                tokio::task::unconstrained(stream(inner.clone(), info.clone(), req, respond))
            })) => match ended {
                None => tokio::task::yield_now().await,
                Some(Err(e)) => {
                    tracing::debug!(client = %client, error = %e, "HTTP/2 connection ended with an error");
                    break;
                }
                Some(Ok(())) => break,
            },
            () = ping_timer.as_mut() => {
                let Some(p) = pings.as_mut() else {
                    ping_timer.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
                    continue;
                };
                if ping_out {
                    tracing::debug!(client = %client, "HTTP/2 keep-alive ping unanswered; closing the connection");
                    conn.abrupt_shutdown(Reason::NO_ERROR);
                    // The GOAWAY goes out as the connection is polled once more.
                    let _ = tokio::time::timeout(Duration::from_millis(100), poll_fn(|cx| conn.poll_closed(cx))).await;
                    break;
                }
                if p.send_ping(Ping::opaque()).is_ok() {
                    ping_out = true;
                }
                ping_timer.as_mut().reset(tokio::time::Instant::now() + ping_every);
            }
            pong = poll_fn(|cx| poll_pong(&mut pings, ping_out, cx)) => {
                ping_out = false;
                if pong.is_err() {
                    break;
                }
            }
            () = stop.as_mut(), if !draining => {
                draining = true;
                conn.graceful_shutdown();
                drain_timer.as_mut().reset(tokio::time::Instant::now() + drain);
            }
            () = drain_timer.as_mut(), if draining => {
                tracing::warn!(client = %client, streams = streams.len(), "connection still busy after the drain timeout; closing it");
                break;
            }
        }
    }
}

/// Run the streams, then the connection: the frames the streams queued leave in one write,
/// and the requests one read brought are all taken before any of them runs. `Ready(None)`
/// asks the caller to yield to the runtime once before the connection writes (`may_yield`
/// is cleared until the next time it would sleep): other connections run first, and the
/// origin answers that arrive meanwhile leave in the same write. Without that yield the
/// edge wrote 0.145 times per request instead of 0.10 under h2load and spent 8% more CPU
/// per request than hyper's server; with it, the same writes and CPU as hyper's, in one
/// task. `Ready(Some(_))` when the connection has ended.
fn poll_conn<F, Fut>(
    conn: &mut h2::server::Connection<impl AsyncRead + AsyncWrite + Unpin, Bytes>,
    streams: &mut FuturesUnordered<Fut>,
    may_yield: &mut bool,
    cx: &mut Context<'_>,
    mut start: F,
) -> Poll<Option<Result<(), h2::Error>>>
where
    F: FnMut(Request<RecvStream>, SendResponse<Bytes>) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let mut done = false;
        while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {
            done = true;
        }
        if done && *may_yield {
            *may_yield = false;
            return Poll::Ready(None);
        }
        let mut accepted = false;
        loop {
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    streams.push(start(req, respond));
                    accepted = true;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(Some(Ok(()))),
                Poll::Pending => break,
            }
        }
        if !accepted {
            *may_yield = true;
            return Poll::Pending;
        }
    }
}

/// A pong when one is awaited; pending otherwise.
fn poll_pong(
    pings: &mut Option<h2::PingPong>,
    waiting: bool,
    cx: &mut Context<'_>,
) -> Poll<Result<(), h2::Error>> {
    match pings {
        Some(p) if waiting => p.poll_pong(cx).map_ok(drop),
        _ => Poll::Pending,
    }
}

/// One stream: the request through the proxy, raced against the client's reset, then the
/// response out.
async fn stream(
    inner: Arc<Inner>,
    info: ConnInfo,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (parts, recv) = req.into_parts();
    let body = if recv.is_end_stream() {
        ClientBody::Empty
    } else {
        let length = content_length(&parts.headers);
        ClientBody::H2(H2Body::new(recv, length))
    };
    let head_request = parts.method == Method::HEAD;
    let client = info.client;
    let handled = crate::proxy::handle(inner, info, Request::from_parts(parts, body));
    let resp = {
        let mut handled = pin!(handled);
        let raced = poll_fn(|cx| {
            if let Poll::Ready(r) = handled.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            match respond.poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        });
        match raced.await {
            Some(Ok(resp)) => resp,
            Some(Err(never)) => match never {},
            None => {
                tracing::debug!(client = %client, "client reset the stream; request dropped");
                return;
            }
        }
    };
    let (mut head, body) = resp.into_parts();
    strip_connection_headers(&mut head.headers);
    if !head.headers.contains_key(header::DATE) {
        head.headers
            .insert(header::DATE, crate::h1::date_header_value());
    }
    let end = head_request || body.is_end_stream();
    if !end && let Some(n) = body.size_hint().exact() {
        head.headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| http::HeaderValue::from(n));
    }
    let send = match respond.send_response(Response::from_parts(head, ()), end) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(client = %client, error = %e, "response head not sent");
            respond.send_reset(Reason::INTERNAL_ERROR);
            return;
        }
    };
    if end {
        return;
    }
    if let Err(e) = (Pipe {
        send,
        body,
        waiting: None,
    })
    .await
    {
        tracing::debug!(client = %client, error = %e, "response body not completed");
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2), which h2 would refuse to send.
static CONNECTION_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
];

fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in &CONNECTION_HEADERS {
        headers.remove(name);
    }
    if let Some(v) = headers.remove(header::CONNECTION)
        && let Ok(v) = v.to_str()
    {
        for name in v.split(',') {
            headers.remove(name.trim());
        }
    }
}

/// Why a response body stopped short.
#[derive(Debug, thiserror::Error)]
enum PipeError {
    #[error("the client reset the stream ({0:?})")]
    Reset(Reason),
    #[error("HTTP/2: {0}")]
    H2(#[from] h2::Error),
    #[error("response body failed: {0}")]
    Body(crate::body::BoxError),
}

/// A response body into its stream, as the client's flow-control window allows (hyper's
/// `PipeToSendStream`: capacity is claimed only with a chunk in hand, so a body that never
/// produces data cannot pin the connection's window).
struct Pipe {
    send: SendStream<Bytes>,
    body: BoxBody,
    /// A chunk waiting for capacity, and whether it ends the body.
    waiting: Option<(Bytes, bool)>,
}

impl Future for Pipe {
    type Output = Result<(), PipeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.get_mut();
        loop {
            if let Poll::Ready(r) = me.send.poll_reset(cx) {
                return Poll::Ready(Err(r.map_or_else(PipeError::H2, PipeError::Reset)));
            }
            if let Some((data, eos)) = me.waiting.take() {
                while me.send.capacity() == 0 {
                    match me.send.poll_capacity(cx) {
                        Poll::Pending => {
                            me.waiting = Some((data, eos));
                            return Poll::Pending;
                        }
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(None) => {
                            return Poll::Ready(Err(PipeError::Reset(Reason::CANCEL)));
                        }
                    }
                }
                // h2 takes the whole chunk and sends it as capacity comes.
                me.send.send_data(data, eos)?;
                if eos {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match Pin::new(&mut me.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    me.send.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Err(e))) => {
                    me.send.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(PipeError::Body(e)));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let eos = me.body.is_end_stream();
                        if data.is_empty() {
                            me.send.send_data(data, eos)?;
                            if eos {
                                return Poll::Ready(Ok(()));
                            }
                            continue;
                        }
                        me.send.reserve_capacity(1);
                        me.waiting = Some((data, eos));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            me.send.reserve_capacity(0);
                            me.send.send_trailers(trailers)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
            }
        }
    }
}
