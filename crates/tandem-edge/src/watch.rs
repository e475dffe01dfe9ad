//! The deadlines of an HTTP/1 client connection — the next request head must arrive within
//! `client_header` of the last response (or of the accept), the origin must start answering
//! within `first_byte` — kept as plain numbers that the request path sets, and enforced by
//! one timer per connection that fires at most every `min(client_header, first_byte)`.
//!
//! Why not a timer per deadline: hyper's header-read timer and a `tokio::time::timeout` per
//! origin attempt register and cancel two timer-wheel entries per request, which measured
//! at about a tenth of the proxy's CPU per request (`bench/edge/run.sh`, plain HTTP/1.1).
//! Here a request costs a few relaxed atomic stores; the connection's timer is armed so that
//! it never fires after a deadline (every deadline is set at least the shorter timeout
//! ahead, and the timer is never armed further than that), and when it fires it looks at the
//! deadlines and re-arms itself.
//!
//! A client that lets the head deadline pass in the middle of a request head gets
//! `408 Request Timeout` before the connection closes; one that sent nothing (an idle
//! keep-alive connection) is closed without a word, so a client reusing the connection at
//! that moment never reads a 408 meant for nobody. [`ClientIo`] notes the head's first bytes
//! and writes the 408 as the connection is dropped (hyper owns the stream until then).
//!
//! HTTP/1 serves one request at a time per connection, so one first-byte slot suffices.
//! HTTP/2 streams run in tasks of their own and keep `tokio::time::timeout`; a connection
//! that turns out to speak HTTP/2 (prior knowledge on plain HTTP) stops its head deadline,
//! HTTP/2's keep-alive pings watch it instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::balance::Clock;

/// No deadline.
const NONE: u64 = u64::MAX;

/// One client connection's deadlines, in milliseconds on the edge's [`Clock`].
#[derive(Debug)]
pub struct Watch {
    clock: Clock,
    header_ms: u64,
    /// How far ahead the timer may be armed: the shorter of the two timeouts.
    tick_ms: u64,
    /// When the next request head must have arrived; applies while nothing is in flight.
    head: AtomicU64,
    in_flight: AtomicU32,
    /// When the origin must have started answering the request in flight.
    first_byte: AtomicU64,
    first_byte_expired: AtomicBool,
    h2: AtomicBool,
    /// Bytes arrived while no request was in flight: a request head has begun.
    head_begun: AtomicBool,
    /// The head deadline passed; the connection is being closed.
    head_expired: AtomicBool,
}

impl Watch {
    /// A new connection: its first request head is due `client_header` from now.
    pub fn new(clock: Clock, client_header: Duration, first_byte: Duration) -> Arc<Self> {
        let header_ms = (client_header.as_millis() as u64).max(1);
        let first_byte_ms = (first_byte.as_millis() as u64).max(1);
        Arc::new(Watch {
            clock,
            header_ms,
            tick_ms: header_ms.min(first_byte_ms),
            head: AtomicU64::new(clock.now_ms() + header_ms),
            in_flight: AtomicU32::new(0),
            first_byte: AtomicU64::new(NONE),
            first_byte_expired: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            head_begun: AtomicBool::new(false),
            head_expired: AtomicBool::new(false),
        })
    }

    /// A request head arrived; the returned guard ends the request when dropped (with the
    /// response body, or with the request if the client goes away).
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        self.head_begun.store(false, Relaxed);
        InFlight(Arc::clone(self))
    }

    /// The connection speaks HTTP/2: no head deadline from now on.
    pub fn set_h2(&self) {
        self.h2.store(true, Relaxed);
    }

    /// Wait for `fut`, the origin's answer, until `deadline_ms`; `None` when it passed.
    pub fn first_byte<F: Future>(&self, deadline_ms: u64, fut: F) -> FirstByte<'_, F> {
        self.first_byte_expired.store(false, Relaxed);
        self.first_byte.store(deadline_ms, Relaxed);
        FirstByte { fut, watch: self }
    }

    /// The earliest deadline in force.
    fn next(&self) -> u64 {
        let head = if self.in_flight.load(Relaxed) == 0 && !self.h2.load(Relaxed) {
            self.head.load(Relaxed)
        } else {
            NONE
        };
        head.min(self.first_byte.load(Relaxed))
    }

    /// Act on the deadlines that passed by `now`; `true` when the head deadline did (the
    /// connection is to be closed).
    fn expire(&self, now: u64) -> bool {
        let fb = self.first_byte.load(Relaxed);
        if fb != NONE && now >= fb {
            self.first_byte.store(NONE, Relaxed);
            self.first_byte_expired.store(true, Relaxed);
        }
        let expired = self.in_flight.load(Relaxed) == 0
            && !self.h2.load(Relaxed)
            && now >= self.head.load(Relaxed);
        if expired {
            self.head_expired.store(true, Relaxed);
        }
        expired
    }

    /// Whether the connection is closing in the middle of a request head.
    fn head_cut_off(&self) -> bool {
        self.head_expired.load(Relaxed) && self.head_begun.load(Relaxed)
    }
}

/// The answer to a request head that did not arrive in time.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 47\r\n\r\n\
the request head did not arrive in time; retry\n";

/// A client stream that can take a last short message as it is dropped, without waiting:
/// whatever the socket does not accept at once is lost (the connection is closing anyway).
pub trait LastWords {
    /// Write `bytes` if the socket takes them now.
    fn last_words(&mut self, bytes: &[u8]);
}

impl LastWords for tokio::net::TcpStream {
    fn last_words(&mut self, bytes: &[u8]) {
        let _ = self.try_write(bytes);
    }
}

impl LastWords for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn last_words(&mut self, bytes: &[u8]) {
        use std::io::Write as _;
        struct Now<'a>(&'a tokio::net::TcpStream);
        impl std::io::Write for Now<'_> {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.try_write(b)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (tcp, conn) = self.get_mut();
        if conn.writer().write_all(bytes).is_err() {
            return;
        }
        conn.send_close_notify();
        let mut out = Now(tcp);
        while conn.wants_write() {
            if conn.write_tls(&mut out).is_err() {
                break;
            }
        }
    }
}

/// An HTTP/1 client connection's stream: notes when a request head begins, and answers a
/// head cut off by its deadline with 408 when dropped.
#[derive(Debug)]
pub struct ClientIo<S: LastWords> {
    io: S,
    watch: Arc<Watch>,
    /// Nothing read yet.
    fresh: bool,
    /// The client opened with the HTTP/2 preface (prior knowledge): no HTTP/1 answer for it.
    h2c: bool,
}

impl<S: LastWords> ClientIo<S> {
    /// Wrap `io`, the stream of the connection `watch` watches.
    pub fn new(io: S, watch: Arc<Watch>) -> Self {
        ClientIo {
            io,
            watch,
            fresh: true,
            h2c: false,
        }
    }
}

impl<S: LastWords> Drop for ClientIo<S> {
    fn drop(&mut self) {
        if !self.h2c && self.watch.head_cut_off() {
            self.io.last_words(REQUEST_TIMEOUT);
        }
    }
}

impl<S: LastWords + AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            if self.fresh {
                // The preface's request line, or as much of it as the first read brought.
                const PREFACE: &[u8] = b"PRI * HTTP/2.0";
                let first = &buf.filled()[before..];
                let n = first.len().min(PREFACE.len());
                self.fresh = false;
                self.h2c = first[..n] == PREFACE[..n];
            }
            if self.watch.in_flight.load(Relaxed) == 0 {
                self.watch.head_begun.store(true, Relaxed);
            }
        }
        r
    }
}

impl<S: LastWords + AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request in flight on a watched connection; dropping it starts the wait for the next
/// request head.
#[derive(Debug)]
pub struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let w = &self.0;
        if w.in_flight.fetch_sub(1, Relaxed) == 1 {
            w.head.store(w.clock.now_ms() + w.header_ms, Relaxed);
        }
    }
}

pin_project_lite::pin_project! {
    /// The origin's answer or `None` when the first-byte deadline passed.
    pub struct FirstByte<'a, F> {
        #[pin]
        fut: F,
        watch: &'a Watch,
    }

    impl<F> PinnedDrop for FirstByte<'_, F> {
        fn drop(this: Pin<&mut Self>) {
            this.watch.first_byte.store(NONE, Relaxed);
        }
    }
}

impl<F: Future> Future for FirstByte<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.watch.first_byte_expired.load(Relaxed) {
            this.watch.first_byte_expired.store(false, Relaxed);
            return Poll::Ready(None);
        }
        match this.fut.poll(cx) {
            Poll::Ready(v) => {
                this.watch.first_byte.store(NONE, Relaxed);
                Poll::Ready(Some(v))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection future under its [`Watch`]: `None` when the client let the head deadline
    /// pass (the connection is dropped, as hyper's header-read timeout does).
    pub struct Watched<F> {
        #[pin]
        conn: F,
        #[pin]
        timer: Sleep,
        armed: u64,
        // The timer was polled since it was last armed, so it holds the task's waker (the
        // task is always the same) and only needs looking at again once it has elapsed.
        registered: bool,
        watch: Arc<Watch>,
    }
}

impl<F> Watched<F> {
    /// Watch `conn`.
    pub fn new(conn: F, watch: Arc<Watch>) -> Self {
        let armed = watch.next().min(watch.clock.now_ms() + watch.tick_ms);
        Watched {
            conn,
            timer: tokio::time::sleep_until(watch.clock.at(armed).into()),
            armed,
            registered: false,
            watch,
        }
    }

    /// The connection itself (for a graceful shutdown).
    pub fn conn(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().conn
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Poll::Ready(r) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            // Deadlines are set at least a tick ahead, so this only re-arms when a timeout
            // is configured shorter than the time the timer was armed for.
            let want = this.watch.next();
            if want < *this.armed {
                *this.armed = want;
                this.timer.as_mut().reset(this.watch.clock.at(want).into());
                *this.registered = false;
            }
            if *this.registered && !this.timer.is_elapsed() {
                return Poll::Pending;
            }
            *this.registered = true;
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer firing proves that `armed` has passed; the clock (coarse, up to a
            // tick behind) may not show it yet, and re-arming for a time already past would
            // spin until it does.
            let now = this.watch.clock.now_ms().max(*this.armed);
            if this.watch.expire(now) {
                tracing::debug!("client sent no request head in time; closing the connection");
                return Poll::Ready(None);
            }
            let next = this.watch.next();
            *this.armed = if next == NONE {
                now + this.watch.tick_ms
            } else {
                next.min(now + this.watch.tick_ms)
            };
            this.timer
                .as_mut()
                .reset(this.watch.clock.at(*this.armed).into());
            *this.registered = false;
            // Poll the connection again: a request whose first-byte deadline passed sees it.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_passed_head_deadline_closes_the_connection_without_spinning() {
        for _ in 0..30 {
            let watch = Watch::new(
                Clock::default(),
                Duration::from_millis(30),
                Duration::from_secs(5),
            );
            let polls = Arc::new(AtomicU32::new(0));
            let counted = Arc::clone(&polls);
            let conn = std::future::poll_fn(move |_| {
                counted.fetch_add(1, Relaxed);
                Poll::<()>::Pending
            });
            let start = std::time::Instant::now();
            let out = tokio::time::timeout(Duration::from_secs(5), Watched::new(conn, watch))
                .await
                .expect("the watch closes the connection");
            assert!(out.is_none(), "closed for the deadline, not finished");
            assert!(start.elapsed() >= Duration::from_millis(25));
            // One poll to start and one per timer wake-up; a timer re-armed for a time the
            // clock does not show as passed yet would poll in a loop until it does.
            let n = polls.load(Relaxed);
            assert!(n <= 5, "the connection was polled {n} times");
        }
    }
}
