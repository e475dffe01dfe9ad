//! Body wrappers for streaming both ways without buffering whole bodies:
//!
//! - [`ReplayBody`]: the client's request body, streamed to the origin while the first
//!   `retry_buffer_bytes` are kept, so a failed attempt can be replayed on another origin.
//! - [`Limited`]: refuses a request body past `max_body_bytes` (413).
//! - [`Idle`]: fails a body that stays silent longer than the idle timeout.
//! - [`OnEnd`]: counts the bytes that reach the client and runs the logging phase when the
//!   response body is finished (or dropped because the client went away).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};

/// Boxed errors in bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type on both sides of the proxy.
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> BoxBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body with fixed content.
pub fn full(b: impl Into<Bytes>) -> BoxBody {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A client's request body: hyper's for the requests hyper's server reads (HTTP/2, and
/// HTTP/1 requests with a chunked or large body); for those the edge's own HTTP/1 server
/// reads, none or the small body it read whole.
#[derive(Debug)]
pub enum ClientBody {
    /// Read by hyper.
    Hyper(hyper::body::Incoming),
    /// No body.
    Empty,
    /// The whole body, already read; empty once handed on.
    Buffered(Bytes),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx),
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Buffered(b) if b.is_empty() => Poll::Ready(None),
            ClientBody::Buffered(b) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(b))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::Empty => true,
            ClientBody::Buffered(b) => b.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Buffered(b) => SizeHint::with_exact(b.len() as u64),
        }
    }
}

/// The request body grew past the limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {0} bytes")]
pub struct TooLarge(pub u64);

/// A body stayed silent longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("body idle for more than {0:?}")]
pub struct IdleTimeout(pub Duration);

pin_project_lite::pin_project! {
    /// Fails once more than `limit` bytes have passed.
    pub struct Limited<B> {
        #[pin]
        inner: B,
        seen: u64,
        limit: u64,
    }
}

impl<B> Limited<B> {
    /// Wrap `inner`.
    pub fn new(inner: B, limit: u64) -> Self {
        Limited {
            inner,
            seen: 0,
            limit,
        }
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    *this.seen += d.len() as u64;
                    if *this.seen > *this.limit {
                        return Poll::Ready(Some(Err(Box::new(TooLarge(*this.limit)))));
                    }
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            other => other.map(|_| None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// Fails when no frame arrives for `timeout`. The timer is only created the first time
    /// the inner body is not ready, so a body that arrives in one piece costs no timer.
    pub struct Idle<B> {
        #[pin]
        inner: B,
        timeout: Duration,
        sleep: Option<Pin<Box<Sleep>>>,
        armed: bool,
    }
}

impl<B> Idle<B> {
    /// Wrap `inner`.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Idle {
            inner,
            timeout,
            sleep: None,
            armed: false,
        }
    }
}

impl<B> Body for Idle<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(r) => {
                *this.armed = false;
                Poll::Ready(r.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + *this.timeout;
                let sleep = match this.sleep {
                    Some(s) => {
                        if !*this.armed {
                            s.as_mut().reset(deadline);
                        }
                        s
                    }
                    None => this
                        .sleep
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                *this.armed = true;
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(IdleTimeout(*this.timeout))))),
                    Poll::Pending => Poll::Pending,
                }
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

struct ReplayState {
    inner: Option<BoxBody>,
    frames: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    buffered: usize,
    /// More than the buffer has been read, so the body can no longer be replayed.
    overflow: bool,
    /// Whether any attempt polled the body.
    started: bool,
    /// The inner body ended.
    done: bool,
    /// The attempt that may read; older attempts see the end of the stream.
    current: u32,
    /// An error from the client's side while reading.
    failed: bool,
}

/// The client's body, shared by the attempts at origins.
#[derive(Clone)]
pub struct ReplayBody {
    /// `None` for an empty body (most requests): nothing to share or buffer.
    state: Option<Arc<Mutex<ReplayState>>>,
    limit: usize,
    hint: SizeHint,
}

impl ReplayBody {
    /// Share `inner`, keeping up to `limit` bytes for replays.
    pub fn new(inner: BoxBody, limit: usize) -> Self {
        let hint = inner.size_hint();
        let state = (!inner.is_end_stream()).then(|| {
            Arc::new(Mutex::new(ReplayState {
                inner: Some(inner),
                frames: Vec::new(),
                trailers: None,
                buffered: 0,
                overflow: false,
                started: false,
                done: false,
                current: 0,
                failed: false,
            }))
        });
        ReplayBody { state, limit, hint }
    }

    /// Whether another attempt can send the whole body again: it was never read, or all of
    /// what was read is still buffered.
    pub fn replayable(&self) -> bool {
        let Some(state) = &self.state else {
            return true;
        };
        match state.lock() {
            Ok(s) => !s.failed && (!s.started || !s.overflow),
            Err(_) => false,
        }
    }

    /// Whether the body was never read by an attempt.
    pub fn untouched(&self) -> bool {
        let Some(state) = &self.state else {
            return true;
        };
        state.lock().map(|s| !s.started).unwrap_or(false)
    }

    /// Whether reading the client's body failed (too large, client gone).
    pub fn client_failed(&self) -> bool {
        let Some(state) = &self.state else {
            return false;
        };
        state.lock().map(|s| s.failed).unwrap_or(false)
    }

    /// A body for the next attempt. Earlier attempts' bodies stop reading.
    pub fn attempt(&self) -> BoxBody {
        let Some(state) = &self.state else {
            return empty();
        };
        let id = match state.lock() {
            Ok(mut s) => {
                s.current += 1;
                s.current
            }
            Err(_) => 0,
        };
        http_body_util::BodyExt::boxed_unsync(Attempt {
            state: state.clone(),
            id,
            pos: 0,
            limit: self.limit,
            hint: self.hint,
        })
    }
}

struct Attempt {
    state: Arc<Mutex<ReplayState>>,
    id: u32,
    pos: usize,
    limit: usize,
    hint: SizeHint,
}

#[derive(Debug, thiserror::Error)]
#[error("request body is no longer available to this attempt")]
struct Superseded;

impl Body for Attempt {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Ok(mut s) = this.state.lock() else {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        };
        if s.current != this.id {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        }
        s.started = true;
        if this.pos < s.frames.len() {
            let f = s.frames[this.pos].clone();
            this.pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(f))));
        }
        if s.done {
            return Poll::Ready(s.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        }
        let Some(inner) = s.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                s.failed = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(d) => {
                        if !s.overflow && s.buffered + d.len() <= this.limit {
                            s.buffered += d.len();
                            s.frames.push(d.clone());
                            this.pos += 1;
                        } else {
                            s.overflow = true;
                            s.frames.clear();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(d))));
                    }
                    Err(f) => f,
                };
                if let Ok(t) = frame.into_trailers() {
                    s.trailers = Some(t.clone());
                    s.done = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                Poll::Ready(None)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

pin_project_lite::pin_project! {
    /// Counts bytes and calls `done(bytes, complete)` once, when the body ends, fails or is
    /// dropped.
    pub struct OnEnd<B, F: FnOnce(u64, bool)> {
        #[pin]
        inner: B,
        bytes: u64,
        done: Option<F>,
    }
    impl<B, F: FnOnce(u64, bool)> PinnedDrop for OnEnd<B, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(f) = this.done.take() {
                f(*this.bytes, false);
            }
        }
    }
}

impl<B, F: FnOnce(u64, bool)> OnEnd<B, F> {
    /// Wrap `inner`.
    pub fn new(inner: B, done: F) -> Self {
        OnEnd {
            inner,
            bytes: 0,
            done: Some(done),
        }
    }
}

impl<B, F> Body for OnEnd<B, F>
where
    B: Body<Data = Bytes, Error = BoxError>,
    F: FnOnce(u64, bool),
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    *this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = this.done.take() {
                    f(*this.bytes, true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(f) = this.done.take() {
                    f(*this.bytes, false);
                }
            }
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// Yields `prefix` first, then the rest of `inner` (a body partly read for inspection).
    pub struct Prefixed<B> {
        prefix: Option<Bytes>,
        #[pin]
        inner: B,
    }
}

impl<B> Prefixed<B> {
    /// Wrap `inner`.
    pub fn new(prefix: Bytes, inner: B) -> Self {
        Prefixed {
            prefix: (!prefix.is_empty()).then_some(prefix),
            inner,
        }
    }
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(p) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static str]) -> BoxBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    async fn collect(b: BoxBody) -> Result<Bytes, BoxError> {
        Ok(b.collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn replays_a_buffered_body() {
        let r = ReplayBody::new(chunks(&["ab", "cd"]), 16);
        assert!(r.untouched());
        let first = collect(r.attempt()).await.expect("first");
        assert_eq!(first, "abcd");
        assert!(r.replayable());
        let second = collect(r.attempt()).await.expect("second");
        assert_eq!(second, "abcd");
    }

    #[tokio::test]
    async fn a_partly_read_body_replays_the_rest_from_the_source() {
        let r = ReplayBody::new(chunks(&["ab", "cd", "ef"]), 16);
        let mut a = r.attempt();
        let f = a.frame().await.expect("frame").expect("ok");
        assert_eq!(f.into_data().ok().as_deref(), Some(&b"ab"[..]));
        drop(a);
        assert!(r.replayable());
        assert_eq!(collect(r.attempt()).await.expect("second"), "abcdef");
    }

    #[tokio::test]
    async fn overflow_is_not_replayable_and_old_attempts_stop() {
        let r = ReplayBody::new(chunks(&["abcd", "efgh"]), 5);
        let old = r.attempt();
        assert_eq!(collect(old).await.expect("first"), "abcdefgh");
        assert!(!r.replayable());
        let a = r.attempt();
        let b = r.attempt();
        assert!(collect(a).await.is_err(), "superseded attempt must fail");
        drop(b);
    }

    #[tokio::test]
    async fn idle_bodies_time_out() {
        let silent = http_body_util::StreamBody::new(futures::stream::pending::<
            Result<Frame<Bytes>, BoxError>,
        >());
        let b = Idle::new(silent, Duration::from_millis(50)).boxed_unsync();
        let started = std::time::Instant::now();
        let err = collect(b).await.expect_err("idle");
        assert!(err.downcast_ref::<IdleTimeout>().is_some(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let b = Idle::new(chunks(&["a", "b"]), Duration::from_millis(50)).boxed_unsync();
        assert_eq!(collect(b).await.expect("ready body"), "ab");
    }

    #[tokio::test]
    async fn limits_and_counts() {
        let l = Limited::new(chunks(&["abc", "def"]), 4).boxed_unsync();
        assert!(collect(l).await.is_err());
        let (tx, rx) = std::sync::mpsc::channel();
        let b = OnEnd::new(chunks(&["abc", "de"]), move |n, ok| {
            let _ = tx.send((n, ok));
        })
        .boxed_unsync();
        collect(b).await.expect("body");
        assert_eq!(rx.recv().expect("called"), (5, true));
    }
}
