//! The edge's own HTTP/1.1 server for the common request: a keep-alive connection of
//! requests without a body (GET, HEAD, DELETE, ...) or with a small one of a known length
//! (a form or API call up to [`OWN_BODY_MAX`], from its one `Content-Length`). Each head is
//! parsed with httparse straight into slices of the read buffer
//! ([`crate::h1::parse_request`]), its body (if any) read whole into memory, the request
//! handed to [`crate::proxy::handle`] in this task, and the answer written with its head and
//! first bytes in one write ([`crate::h1::encode_response_head`]).
//!
//! Everything else — a chunked or larger body, an upgrade, `Expect`, HTTP/1.0, CONNECT, a
//! head over the limit or one that does not parse, the HTTP/2 preface — is handed over with
//! the unread bytes to hyper's server, which serves the connection from that request on
//! (streaming bodies of any size). So the protocol's hard cases (chunked framing, smuggling
//! attempts, 400/431/414 answers, `100 Continue`, upgrades) keep one implementation,
//! hyper's, and this path only ever sees requests that hyper would read the same way.
//!
//! A small body is read before the request goes on, as nginx buffers request bodies: the
//! whole exchange with the origin then runs from memory, and a body that does not arrive is
//! bounded by the connection's head deadline (a client that stops mid-body gets `408` when
//! `timeouts.client_header` passes, as one that stops mid-head does).
//!
//! Why: hyper's server dispatcher was the largest part of the edge's own CPU per request
//! after the origin client (docs/ARCHITECTURE.md, "Edge data path").

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::Inner;
use crate::body::{BoxBody, ClientBody};
use crate::h1::{self, ParsedRequest, ResponseFraming};
use crate::proxy::ConnInfo;
use crate::stop::Stop;

/// Frames at least this large are written from their own buffer, not copied into ours.
const COPY_LIMIT: usize = 16 * 1024;

/// The largest request body this server reads (into memory, before the request goes on);
/// a longer one goes to hyper's server, which streams it. nginx buffers up to 16 KiB in
/// memory too (`client_body_buffer_size` on 64-bit systems).
pub(crate) const OWN_BODY_MAX: u64 = 16 * 1024;

/// How a connection left this server.
pub(crate) enum Ended<S> {
    /// Closed: by the client, after `Connection: close`, on shutdown or on an error.
    Closed,
    /// hyper serves the rest: the stream and the bytes read but not yet served.
    Handover(S, BytesMut),
}

/// Serve requests on `io` until the connection ends or a request needs hyper.
pub(crate) async fn serve<S>(
    inner: &Arc<Inner>,
    info: &ConnInfo,
    mut io: S,
    stop: &Stop,
) -> Ended<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (max_head, max_headers, max_body) = {
        let snap = inner.snapshot.load();
        let l = &snap.cfg.limits;
        // The same bound as hyper's read buffer; the exact limit is the proxy's (431). A
        // body over the configured limit goes to hyper's path for its 413.
        (
            l.max_header_bytes.max(8192) + 1024,
            l.max_headers,
            OWN_BODY_MAX.min(l.max_body_bytes),
        )
    };
    // One registration for the connection's life, not one per request.
    let mut stopped = std::pin::pin!(stop.wait());
    let mut rbuf = BytesMut::with_capacity(8 * 1024);
    let mut wbuf: Vec<u8> = Vec::with_capacity(8 * 1024);
    loop {
        let (parts, close, body_len) = loop {
            if !rbuf.is_empty() {
                match h1::parse_request(&mut rbuf, max_head, max_headers, max_body) {
                    ParsedRequest::Simple { parts, close, body } => break (parts, close, body),
                    ParsedRequest::Other => return Ended::Handover(io, rbuf),
                    ParsedRequest::Partial => {}
                }
            }
            if rbuf.capacity() - rbuf.len() < 1024 {
                rbuf.reserve(8 * 1024);
            }
            let read = if rbuf.is_empty() {
                // Between requests a shutdown ends the connection at once.
                tokio::select! {
                    biased;
                    r = io.read_buf(&mut rbuf) => r,
                    () = &mut stopped => return Ended::Closed,
                }
            } else {
                io.read_buf(&mut rbuf).await
            };
            match read {
                Ok(0) | Err(_) => return Ended::Closed,
                Ok(_) => {}
            }
        };
        let body = if body_len == 0 {
            ClientBody::Empty
        } else {
            // At most OWN_BODY_MAX, so the cast and the reservation are small.
            let n = body_len as usize;
            while rbuf.len() < n {
                rbuf.reserve(n - rbuf.len());
                match io.read_buf(&mut rbuf).await {
                    Ok(0) | Err(_) => return Ended::Closed,
                    Ok(_) => {}
                }
            }
            ClientBody::Buffered(rbuf.split_to(n).freeze())
        };
        let head_request = parts.method == Method::HEAD;
        let req = Request::from_parts(parts, body);
        let resp = match crate::proxy::handle(inner.clone(), info.clone(), req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let keep_alive = !close && !stop.is_fired();
        let (parts, mut body) = resp.into_parts();
        let head = h1::encode_response_head(
            &mut wbuf,
            &parts,
            head_request,
            body.is_end_stream(),
            body.size_hint().exact(),
            keep_alive,
        );
        let head = match head {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(client = %info.client, error = %e, "response cannot be sent; closing the connection");
                return Ended::Closed;
            }
        };
        drop(parts);
        if let Err(e) = write_body(&mut io, &mut wbuf, &mut body, head.framing).await {
            tracing::debug!(client = %info.client, error = %e, "response not completed; closing the connection");
            return Ended::Closed;
        }
        drop(body);
        if head.last {
            let _ = io.shutdown().await;
            return Ended::Closed;
        }
    }
}

/// Why a response body stopped short.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("writing to the client failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("response body failed: {0}")]
    Body(crate::body::BoxError),
    #[error("response body is longer than its Content-Length")]
    TooLong,
    #[error("response body ended before its Content-Length")]
    TooShort,
}

/// Write `body` after the head in `wbuf`, framed as the head said. Small frames collect in
/// `wbuf` and leave when the body has nothing more ready; large ones go out from their own
/// buffer.
async fn write_body<S: AsyncWrite + Unpin>(
    io: &mut S,
    wbuf: &mut Vec<u8>,
    body: &mut BoxBody,
    framing: ResponseFraming,
) -> Result<(), WriteError> {
    let mut left = match framing {
        ResponseFraming::None => return flush(io, wbuf).await,
        ResponseFraming::Length(n) => Some(n),
        ResponseFraming::Chunked => None,
    };
    if !body.is_end_stream() {
        loop {
            // Poll once; when the body has nothing yet, send what is waiting before sleeping.
            let polled =
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
            let frame = match polled {
                Poll::Ready(f) => f,
                Poll::Pending => {
                    flush(io, wbuf).await?;
                    std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
                }
            };
            let frame = match frame {
                None => break,
                Some(Err(e)) => return Err(WriteError::Body(e)),
                Some(Ok(f)) => f,
            };
            // Trailer fields are not passed on: the proxy treats `Trailer` as hop-by-hop, and
            // without it a client need not expect them (hyper's server drops them too).
            if let Ok(data) = frame.into_data() {
                match &mut left {
                    Some(n) => {
                        *n = n
                            .checked_sub(data.len() as u64)
                            .ok_or(WriteError::TooLong)?;
                        put(io, wbuf, data, false).await?;
                    }
                    None => put(io, wbuf, data, true).await?,
                }
            }
            if body.is_end_stream() {
                break;
            }
        }
    }
    match left {
        Some(0) => {}
        Some(_) => return Err(WriteError::TooShort),
        None => h1::encode_last_chunk(wbuf, None),
    }
    flush(io, wbuf).await
}

/// Queue `data` (as one chunk when `chunked`), writing it from its own buffer when large.
async fn put<S: AsyncWrite + Unpin>(
    io: &mut S,
    wbuf: &mut Vec<u8>,
    data: Bytes,
    chunked: bool,
) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    if data.len() < COPY_LIMIT {
        if chunked {
            h1::encode_chunk(wbuf, &data);
        } else {
            wbuf.extend_from_slice(&data);
        }
        return Ok(());
    }
    if chunked {
        h1::encode_chunk_size(wbuf, data.len());
    }
    write_two(io, wbuf, &data).await?;
    wbuf.clear();
    if chunked {
        wbuf.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// Write `a` then `b`, in one system call where the stream takes vectors.
async fn write_two<S: AsyncWrite + Unpin>(io: &mut S, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() || !b.is_empty() {
        let n = io
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

/// Send what `wbuf` holds.
async fn flush<S: AsyncWrite + Unpin>(io: &mut S, wbuf: &mut Vec<u8>) -> Result<(), WriteError> {
    if !wbuf.is_empty() {
        io.write_all(wbuf).await?;
        wbuf.clear();
    }
    io.flush().await?;
    Ok(())
}

pin_project_lite::pin_project! {
    /// A stream whose first bytes were already read: they are read again first (what hyper
    /// gets when a connection is handed over).
    pub(crate) struct Rewound<S> {
        pre: Bytes,
        #[pin]
        io: S,
    }
}

impl<S> Rewound<S> {
    /// `pre`, then `io`.
    pub(crate) fn new(io: S, pre: BytesMut) -> Self {
        Rewound {
            pre: pre.freeze(),
            io,
        }
    }
}

impl<S: AsyncRead> AsyncRead for Rewound<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        this.io.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Rewound<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}
