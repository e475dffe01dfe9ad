//! HTTP/1.1 towards origins, the message syntax (RFC 9112): the request head Tandem writes,
//! the response head it reads (httparse), how the response body is delimited, and the chunked
//! decoder. No I/O here; [`crate::client`] drives these over the pooled connections.
//!
//! Why by hand: hyper's client connection hands every request through a channel to its
//! dispatcher and back through a oneshot, and keeps a state machine for everything HTTP/1
//! allows; a proxy that already holds the parsed request needs only the encoding and the
//! parsing. Measured on `bench/edge` (docs/ARCHITECTURE.md, "Edge data path").
//!
//! What an origin's response must look like, and what happens when it does not:
//! - the head within [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields, no obs-fold, valid
//!   names and values; otherwise [`ProtocolError`] (the proxy answers 502);
//! - interim 1xx responses (100, 102, 103) are skipped; `101` only ends an upgrade, which
//!   takes hyper's path, so here it is an error;
//! - the body: none for HEAD, 1xx, 204 and 304; `Transfer-Encoding` ending in `chunked`
//!   (a `Content-Length` beside it is dropped and the connection closed afterwards, as RFC
//!   9112 §6.3 tells intermediaries); other transfer codings and no framing at all read to
//!   the close; `Content-Length` must be one valid number (repeats must agree).

use std::io::Write as _;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// Largest response head (status line and fields) accepted from an origin.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a response head (and in a chunked body's trailers).
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4096;

/// An origin's response that Tandem cannot forward.
#[derive(Debug, thiserror::Error)]
#[error("origin sent an invalid response: {0}")]
pub struct ProtocolError(pub &'static str);

/// How a request body goes to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Append `name: value` and its line end.
fn put_field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// What the proxy adds to a request's head for the origin, next to the request's own fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Added<'a> {
    /// `Host`, written first (RFC 9112 §3.2).
    pub host: Option<&'a HeaderValue>,
    /// Written after the request's own fields (forwarding fields, the request id); never
    /// framing fields.
    pub fields: &'a [(HeaderName, HeaderValue)],
}

/// Write the request head into `out`, choosing the body's framing: the request's own
/// `Content-Length` when it has one, else the body's exact size when known, else chunked.
/// Methods that carry a payload get `Content-Length: 0` when the body is empty (as nginx and
/// hyper send them). `Transfer-Encoding` and `TE` in `headers` are left out (they are
/// hop-by-hop; the proxy removed them already).
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    added: Added<'_>,
    body_empty: bool,
    body_len: Option<u64>,
) -> Result<RequestFraming, ProtocolError> {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(h) = added.host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut declared: Option<u64> = None;
    for (name, value) in headers {
        if name == header::TRANSFER_ENCODING || name == header::TE {
            continue;
        }
        if name == header::CONTENT_LENGTH {
            let n = parse_length(value.as_bytes())
                .ok_or(ProtocolError("request Content-Length is not a number"))?;
            if declared.is_some_and(|d| d != n) {
                return Err(ProtocolError(
                    "request has conflicting Content-Length fields",
                ));
            }
            if declared.is_some() {
                continue;
            }
            declared = Some(n);
        }
        put_field(out, name, value);
    }
    for (name, value) in added.fields {
        put_field(out, name, value);
    }
    let framing = match declared {
        Some(n) => RequestFraming::Length(n),
        None if body_empty => {
            if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
            RequestFraming::None
        }
        None => match body_len {
            Some(n) => {
                let _ = write!(out, "content-length: {n}\r\n");
                RequestFraming::Length(n)
            }
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                RequestFraming::Chunked
            }
        },
    };
    out.extend_from_slice(b"\r\n");
    Ok(match framing {
        RequestFraming::Length(0) => RequestFraming::None,
        f => f,
    })
}

/// One `Content-Length` value (a field may repeat it as a list: `5, 5`). `None` if invalid.
fn parse_length(v: &[u8]) -> Option<u64> {
    let mut found: Option<u64> = None;
    for part in v.split(|b| *b == b',') {
        let p = part.trim_ascii();
        if p.is_empty() || p.len() > 19 || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = p.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// This many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the origin closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status, version and fields.
    pub parts: http::response::Parts,
    /// The body's framing.
    pub framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// What [`parse_response`] found at the start of the buffer.
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// An interim (1xx) response, removed from the buffer.
    Interim,
    /// A final response head, consumed from the buffer.
    Head(ResponseHead),
}

/// Room left in a parsed response's header map for the fields the edge adds (the request id,
/// `Strict-Transport-Security`, an affinity cookie), so adding them does not grow
/// (reallocate and rehash) the map. Requests need none: what the proxy adds to them goes
/// into the origin's head, not the map ([`Added`]).
const RESPONSE_FIELDS_ADDED: usize = 3;

/// Parse a response head at the start of `buf`; a whole head (interim or final) is removed
/// from `buf`. `head_request`: the request was HEAD (no body, whatever the fields say).
pub fn parse_response(buf: &mut BytesMut, head_request: bool) -> Result<Parsed, ProtocolError> {
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                return Err(ProtocolError("response head is too large"));
            }
            return Ok(Parsed::Partial);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProtocolError("response has too many header fields"));
        }
        Err(_) => return Err(ProtocolError("response head does not parse")),
    };
    if len > MAX_HEAD {
        return Err(ProtocolError("response head is too large"));
    }
    let code = resp.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| ProtocolError("response status is not valid"))?;
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(ProtocolError(
                "101 Switching Protocols to a request without Upgrade",
            ));
        }
        buf.advance(len);
        return Ok(Parsed::Interim);
    }
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Field values are slices of the head's bytes: no copy per value.
    let base = buf.as_ptr() as usize;
    let mut spans: Vec<(HeaderName, usize, usize)> = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| ProtocolError("response header name is not valid"))?;
        let start = h.value.as_ptr() as usize - base;
        spans.push((name, start, start + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len() + RESPONSE_FIELDS_ADDED);
    for (name, start, end) in spans {
        let v = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| ProtocolError("response header value is not valid"))?;
        headers.append(name, v);
    }
    let mut keep_alive = connection_keeps_alive(&headers, version);
    let framing =
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Empty
        } else if headers.contains_key(header::TRANSFER_ENCODING) {
            let chunked_last = headers
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .next_back()
                .and_then(|v| v.as_bytes().rsplit(|b| *b == b',').next())
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if headers.remove(header::CONTENT_LENGTH).is_some() || version == Version::HTTP_10 {
                keep_alive = false;
            }
            if chunked_last {
                Framing::Chunked
            } else {
                keep_alive = false;
                Framing::Close
            }
        } else {
            let mut length: Option<u64> = None;
            for v in headers.get_all(header::CONTENT_LENGTH) {
                let n = parse_length(v.as_bytes())
                    .ok_or(ProtocolError("response Content-Length is not valid"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(ProtocolError(
                        "response has conflicting Content-Length fields",
                    ));
                }
                length = Some(n);
            }
            match length {
                Some(n) => Framing::Length(n),
                None => {
                    keep_alive = false;
                    Framing::Close
                }
            }
        };
    let mut r = http::Response::new(());
    *r.status_mut() = status;
    *r.version_mut() = version;
    *r.headers_mut() = headers;
    let (parts, ()) = r.into_parts();
    Ok(Parsed::Head(ResponseHead {
        parts,
        framing,
        keep_alive,
    }))
}

/// A client's request head, as far as the edge's own HTTP/1 server takes it.
#[derive(Debug)]
// The common variant is the large one; boxing it would allocate once per request.
#[allow(clippy::large_enum_variant)]
pub enum ParsedRequest {
    /// More bytes are needed (and the buffer is still under the limit).
    Partial,
    /// A plain HTTP/1.1 request whose head is removed from the buffer; its body (`body`
    /// bytes, from its one `Content-Length`) is what follows in the buffer and on the
    /// connection. `close`: the client asked to close the connection after it.
    Simple {
        /// The request line and fields.
        parts: http::request::Parts,
        /// `Connection: close`.
        close: bool,
        /// The body's length: the request's `Content-Length`, 0 without one.
        body: u64,
    },
    /// Anything else — a chunked or larger body, an upgrade, `Expect`, HTTP/1.0, CONNECT, a
    /// head over the limit or one that does not parse: left in the buffer for hyper's
    /// server, which serves the connection from here on (and answers 400/431/414 where it
    /// must).
    Other,
}

/// Longest request target hyper accepts (it answers 414 beyond).
const MAX_URI: usize = 65_534;

/// Parse the request head at the start of `buf` if it is a [`ParsedRequest::Simple`] one:
/// HTTP/1.1, a method other than CONNECT, no `Transfer-Encoding`, at most one
/// `Content-Length`, written in plain decimal without leading zeros and at most `max_body`,
/// no `Expect`, no `Upgrade` and no `upgrade` token in `Connection`, at most `max_headers`
/// fields within `max_head` bytes. Field values are slices of the head's bytes.
pub fn parse_request(
    buf: &mut BytesMut,
    max_head: usize,
    max_headers: usize,
    max_body: u64,
) -> ParsedRequest {
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let fields = &mut fields[..max_headers.min(MAX_HEADERS)];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, fields)
    {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return ParsedRequest::Partial,
        _ => return ParsedRequest::Other,
    };
    if req.version != Some(1) {
        return ParsedRequest::Other;
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return ParsedRequest::Other;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return ParsedRequest::Other;
    };
    if method == Method::CONNECT || path.len() > MAX_URI {
        return ParsedRequest::Other;
    }
    // Where each name and value sits in the head: the fields borrow `buf`, which the split
    // below ends, and the values become slices of the split-off head (no copy per value).
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    let path_at = at(path.as_bytes()) as usize;
    let path_span = path_at..path_at + path.len();
    let mut close = false;
    let mut lengths = 0;
    let mut body = 0;
    let mut spans = [[0u32; 4]; MAX_HEADERS];
    let n = req.headers.len();
    for (span, h) in spans.iter_mut().zip(req.headers.iter()) {
        let name = h.name.as_bytes();
        let is = |n: &HeaderName| name.eq_ignore_ascii_case(n.as_str().as_bytes());
        if is(&header::TRANSFER_ENCODING) || is(&header::EXPECT) || is(&header::UPGRADE) {
            return ParsedRequest::Other;
        }
        if is(&header::CONTENT_LENGTH) {
            match content_length(h.value) {
                Some(n) if n <= max_body => body = n,
                _ => return ParsedRequest::Other,
            }
            lengths += 1;
        }
        if is(&header::CONNECTION) {
            for t in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if t.eq_ignore_ascii_case(b"upgrade") {
                    return ParsedRequest::Other;
                }
                close |= t.eq_ignore_ascii_case(b"close");
            }
        }
        let (ns, vs) = (at(name), at(h.value));
        *span = [ns, ns + name.len() as u32, vs, vs + h.value.len() as u32];
    }
    if lengths > 1 {
        return ParsedRequest::Other;
    }
    let head = buf.split_to(len).freeze();
    let built = (|| {
        let uri = http::Uri::from_maybe_shared(head.slice(path_span)).ok()?;
        let mut headers = HeaderMap::with_capacity(n);
        for &[ns, ne, vs, ve] in &spans[..n] {
            let name = HeaderName::from_bytes(&head[ns as usize..ne as usize]).ok()?;
            let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize));
            headers.append(name, value.ok()?);
        }
        Some((uri, headers))
    })();
    let Some((uri, headers)) = built else {
        // Rare (httparse checked the bytes already): put the head back for hyper to refuse.
        let mut back = BytesMut::with_capacity(head.len() + buf.len());
        back.extend_from_slice(&head);
        back.extend_from_slice(buf);
        *buf = back;
        return ParsedRequest::Other;
    };
    let mut r = http::Request::new(());
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    *r.headers_mut() = headers;
    let (parts, ()) = r.into_parts();
    ParsedRequest::Simple { parts, close, body }
}

/// A `Content-Length` value in its one plain form: 1 to 18 decimal digits, no sign, no
/// leading zero (other than `0` itself), no spaces. Anything else goes to hyper.
fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || (v.len() > 1 && v[0] == b'0') {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// How a response body goes to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body bytes (HEAD, 204, 304, or an empty body).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
}

/// What the response head says about the connection and the body.
#[derive(Debug)]
pub struct ResponseHeadOut {
    /// How the body is delimited.
    pub framing: ResponseFraming,
    /// The connection closes after this response (`Connection: close` was sent).
    pub last: bool,
}

/// Write an HTTP/1.1 response head to a client into `out`, the way hyper's server does for
/// the same response: names in lower case in map order, the body's framing from the
/// response's own `Content-Length`, else the body's exact size, else chunked (a
/// `Transfer-Encoding` in `headers` is dropped); no body for HEAD, 204 and 304; a `Date`
/// when there is none. `end_stream`: the body is known to be empty; `size`: its exact size.
/// `keep_alive: false` adds `Connection: close`. Conflicting or invalid `Content-Length`
/// fields are an error (nothing is written).
pub fn encode_response_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    head_request: bool,
    end_stream: bool,
    size: Option<u64>,
    keep_alive: bool,
) -> Result<ResponseHeadOut, ProtocolError> {
    let start = out.len();
    let status = parts.status;
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let no_length = status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let can_body = !no_length && !head_request;
    let mut declared: Option<u64> = None;
    let mut last = !keep_alive;
    let mut wrote_close = false;
    let mut wrote_date = false;
    for (name, value) in &parts.headers {
        if *name == header::TRANSFER_ENCODING {
            continue;
        }
        if *name == header::CONTENT_LENGTH {
            // An empty body outside HEAD: the field goes (hyper writes `0` below instead).
            if no_length || end_stream && !head_request {
                continue;
            }
            let Some(n) = parse_length(value.as_bytes()) else {
                out.truncate(start);
                return Err(ProtocolError("response Content-Length is not valid"));
            };
            match declared {
                Some(d) if d != n => {
                    out.truncate(start);
                    return Err(ProtocolError(
                        "response has conflicting Content-Length fields",
                    ));
                }
                Some(_) => continue,
                None => declared = Some(n),
            }
        } else if *name == header::CONNECTION {
            let close = value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            last |= close;
            wrote_close |= close;
        } else if *name == header::DATE {
            wrote_date = true;
        }
        put_field(out, name, value);
    }
    if last && !wrote_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let framing = match declared {
        Some(n) if can_body => ResponseFraming::Length(n),
        Some(_) => ResponseFraming::None,
        None if end_stream => {
            if !no_length && !head_request {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
            ResponseFraming::None
        }
        None => match size {
            Some(n) => {
                if !no_length {
                    let _ = write!(out, "content-length: {n}\r\n");
                }
                if can_body {
                    ResponseFraming::Length(n)
                } else {
                    ResponseFraming::None
                }
            }
            None if can_body => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                ResponseFraming::Chunked
            }
            None => ResponseFraming::None,
        },
    };
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        date::extend(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(ResponseHeadOut { framing, last })
}

/// The `Date` value, formatted once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    /// Append the current date (RFC 9110 IMF-fixdate) to `out`.
    pub(super) fn extend(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with_borrow_mut(|(at, text)| {
            if *at != secs || text.is_empty() {
                *at = secs;
                *text = httpdate::fmt_http_date(now);
            }
            out.extend_from_slice(text.as_bytes());
        });
    }
}

/// HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0 only with
/// `Connection: keep-alive`.
fn connection_keeps_alive(headers: &HeaderMap, version: Version) -> bool {
    let has = |token: &[u8]| {
        headers.get_all(header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    if version == Version::HTTP_10 {
        has(b"keep-alive")
    } else {
        !has(b"close")
    }
}

/// One step of the chunked decoder.
#[derive(Debug)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields after the last chunk.
    Trailers(HeaderMap),
    /// The body has ended.
    End,
    /// More bytes are needed.
    NeedMore,
}

/// The chunked transfer coding's decoder (RFC 9112 §7.1), over the connection's read buffer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk with this many bytes to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields or the final CRLF.
    Trailers,
    /// Done.
    Done,
}

impl Chunked {
    /// Take the next piece of the body out of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        loop {
            match *self {
                Chunked::Size => {
                    let window = &buf[..buf.len().min(MAX_CHUNK_LINE)];
                    let Some(lf) = window.iter().position(|b| *b == b'\n') else {
                        if buf.len() >= MAX_CHUNK_LINE {
                            return Err(ProtocolError("chunk-size line is too long"));
                        }
                        return Ok(Step::NeedMore);
                    };
                    let line = &buf[..lf];
                    let line = line
                        .strip_suffix(b"\r")
                        .ok_or(ProtocolError("chunk-size line does not end in CRLF"))?;
                    let size = chunk_size(line)?;
                    buf.advance(lf + 1);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = left.min(buf.len() as u64) as usize;
                    let data = buf.split_to(take).freeze();
                    *self = if take as u64 == left {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left - take as u64)
                    };
                    return Ok(Step::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ProtocolError("chunk data is not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Step::End);
                    }
                    let mut fields = [httparse::EMPTY_HEADER; 32];
                    return match httparse::parse_headers(buf, &mut fields) {
                        Ok(httparse::Status::Complete((len, hs))) => {
                            let mut map = HeaderMap::with_capacity(hs.len());
                            for h in hs {
                                let (Ok(n), Ok(v)) = (
                                    HeaderName::from_bytes(h.name.as_bytes()),
                                    HeaderValue::from_bytes(h.value),
                                ) else {
                                    return Err(ProtocolError("trailer field is not valid"));
                                };
                                map.append(n, v);
                            }
                            buf.advance(len);
                            *self = Chunked::Done;
                            Ok(Step::Trailers(map))
                        }
                        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {
                            Ok(Step::NeedMore)
                        }
                        Ok(httparse::Status::Partial) => {
                            Err(ProtocolError("trailer section is too large"))
                        }
                        Err(_) => Err(ProtocolError("trailer section does not parse")),
                    };
                }
                Chunked::Done => return Ok(Step::End),
            }
        }
    }
}

/// The size in a chunk-size line (`1a;ext=v`, optional whitespace before extensions).
fn chunk_size(line: &[u8]) -> Result<u64, ProtocolError> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 {
        return Err(ProtocolError("chunk size is missing"));
    }
    if digits > 15 {
        return Err(ProtocolError("chunk size is too large"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(ProtocolError("chunk-size line is not valid"));
    }
    let mut n = 0u64;
    for d in &line[..digits] {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        n = n * 16 + u64::from(v);
    }
    Ok(n)
}

/// Append one chunk of a chunked body to `out`.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    encode_chunk_size(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Append a chunk's size line to `out` (its data and CRLF follow).
pub fn encode_chunk_size(out: &mut Vec<u8>, len: usize) {
    let _ = write!(out, "{len:x}\r\n");
}

/// Append the last chunk and the trailer fields of a chunked body to `out`.
pub fn encode_last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        put_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], head_request: bool) -> Result<Parsed, ProtocolError> {
        let mut b = BytesMut::from(raw);
        parse_response(&mut b, head_request)
    }

    fn head(raw: &[u8]) -> ResponseHead {
        match parse(raw, false) {
            Ok(Parsed::Head(h)) => h,
            other => panic!("expected a head, got {other:?}"),
        }
    }

    #[test]
    fn request_head_puts_host_first_and_added_fields_last() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        let host = HeaderValue::from_static("origin.test:8080");
        let fields = [
            (
                HeaderName::from_static("x-forwarded-proto"),
                HeaderValue::from_static("https"),
            ),
            (
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_static("abc"),
            ),
        ];
        let added = Added {
            host: Some(&host),
            fields: &fields,
        };
        let mut out = Vec::new();
        let f = encode_request_head(&mut out, &Method::POST, "/p", &h, added, false, None)
            .expect("head");
        assert_eq!(f, RequestFraming::Length(3));
        assert_eq!(
            std::str::from_utf8(&out).expect("ascii"),
            "POST /p HTTP/1.1\r\nhost: origin.test:8080\r\naccept: */*\r\ncontent-length: 3\r\n\
             x-forwarded-proto: https\r\nx-request-id: abc\r\n\r\n"
        );
    }

    #[test]
    fn request_head_framing() {
        let head = |out: &mut Vec<u8>, m: &Method, h: &HeaderMap, empty: bool, len: Option<u64>| {
            encode_request_head(out, m, "/", h, Added::default(), empty, len)
        };
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("o.test"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let mut out = Vec::new();
        let f = encode_request_head(
            &mut out,
            &Method::GET,
            "/a?b",
            &h,
            Added::default(),
            true,
            Some(0),
        )
        .unwrap();
        assert_eq!(f, RequestFraming::None);
        assert_eq!(out, b"GET /a?b HTTP/1.1\r\nhost: o.test\r\n\r\n");

        out.clear();
        let f = head(&mut out, &Method::POST, &h, true, Some(0)).unwrap();
        assert_eq!(f, RequestFraming::None);
        assert!(out.ends_with(b"content-length: 0\r\n\r\n"));

        out.clear();
        let f = head(&mut out, &Method::PUT, &h, false, Some(5)).unwrap();
        assert_eq!(f, RequestFraming::Length(5));
        assert!(out.ends_with(b"content-length: 5\r\n\r\n"));

        out.clear();
        let f = head(&mut out, &Method::POST, &h, false, None).unwrap();
        assert_eq!(f, RequestFraming::Chunked);
        assert!(out.ends_with(b"transfer-encoding: chunked\r\n\r\n"));
        assert_eq!(
            out.windows(17)
                .filter(|w| w == b"transfer-encoding")
                .count(),
            1
        );

        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
        out.clear();
        let f = head(&mut out, &Method::POST, &h, false, None).unwrap();
        assert_eq!(f, RequestFraming::Length(7));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("8"));
        assert!(head(&mut out, &Method::POST, &h, false, None).is_err());
    }

    #[test]
    fn response_framing_follows_rfc9112() {
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.parts.headers["x-a"], "b");

        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.keep_alive);

        // Both framings: chunked wins, Content-Length goes, the connection closes after.
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.keep_alive);
        assert!(!h.parts.headers.contains_key(header::CONTENT_LENGTH));

        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.keep_alive);

        let h = head(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.keep_alive);

        let h = head(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(h.framing, Framing::Empty);
        let h = head(b"HTTP/1.1 304 Not Modified\r\n\r\n");
        assert_eq!(h.framing, Framing::Empty);
        assert!(h.keep_alive);
        match parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true) {
            Ok(Parsed::Head(h)) => assert_eq!(h.framing, Framing::Empty),
            other => panic!("{other:?}"),
        }

        let h = head(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.keep_alive);
        assert_eq!(h.parts.version, Version::HTTP_10);
        let h = head(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(h.keep_alive);
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: x, close\r\n\r\n");
        assert!(!h.keep_alive);

        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\nContent-Length: 4\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(4));
    }

    #[test]
    fn bad_responses_are_errors() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 4, 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(
                parse(raw, false).is_err(),
                "{:?} should be refused",
                String::from_utf8_lossy(raw)
            );
        }
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(parse(&many, false).is_err());
        let mut big = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert!(parse(&big, false).is_err());
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Le", false),
            Ok(Parsed::Partial)
        ));
    }

    #[test]
    fn interim_responses_are_skipped() {
        let mut b = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
        );
        assert!(matches!(parse_response(&mut b, false), Ok(Parsed::Interim)));
        assert!(matches!(parse_response(&mut b, false), Ok(Parsed::Interim)));
        match parse_response(&mut b, false) {
            Ok(Parsed::Head(h)) => assert_eq!(h.parts.status, 200),
            other => panic!("{other:?}"),
        }
        assert!(b.is_empty());
    }

    fn decode_all(raw: &[u8], split: usize) -> Result<(Vec<u8>, Option<HeaderMap>), ProtocolError> {
        let mut d = Chunked::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        let mut rest = raw;
        loop {
            match d.decode(&mut buf)? {
                Step::Data(b) => body.extend_from_slice(&b),
                Step::Trailers(t) => trailers = Some(t),
                Step::End => return Ok((body, trailers)),
                Step::NeedMore => {
                    if rest.is_empty() {
                        return Err(ProtocolError("truncated"));
                    }
                    let n = split.min(rest.len());
                    buf.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let raw =
            b"5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\n\r\n";
        for split in [1, 2, 3, 7, 64, 1000] {
            let (body, trailers) = decode_all(raw, split).unwrap();
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
            assert_eq!(trailers.unwrap()["x-sum"], "1");
        }
        let (body, trailers) = decode_all(b"3 ;x\r\nabc\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!(body, b"abc");
        assert!(trailers.is_none());
        for bad in [
            &b"zz\r\nab\r\n0\r\n\r\n"[..],
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"ffffffffffffffff\r\n",
            b"3 x\r\nabc\r\n0\r\n\r\n",
            b"0\r\nBad Name: v\r\n\r\n",
        ] {
            assert!(
                decode_all(bad, 5).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = vec![b'1'; MAX_CHUNK_LINE + 1];
        assert!(decode_all(&long, 100).is_err());
    }

    #[test]
    fn chunks_encode() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello");
        encode_chunk(&mut out, b"");
        let mut t = HeaderMap::new();
        t.insert("x-sum", HeaderValue::from_static("1"));
        encode_last_chunk(&mut out, Some(&t));
        assert_eq!(out, b"5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n");
        let (body, trailers) = decode_all(&out, 3).unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(trailers.unwrap()["x-sum"], "1");
    }

    fn request(raw: &[u8]) -> (ParsedRequest, BytesMut) {
        let mut buf = BytesMut::from(raw);
        let p = parse_request(&mut buf, 8192, 100, 1024);
        (p, buf)
    }

    #[test]
    fn simple_requests_are_parsed_and_consumed() {
        let (p, rest) = request(
            b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 0\r\n\r\nGET /next",
        );
        let ParsedRequest::Simple { parts, close, body } = p else {
            panic!("{p:?}")
        };
        assert!(!close);
        assert_eq!(body, 0);
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri, "/a?b=c");
        assert_eq!(parts.version, Version::HTTP_11);
        assert_eq!(parts.headers["host"], "x");
        assert_eq!(parts.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(&rest[..], b"GET /next", "pipelined bytes stay");

        let (p, _) =
            request(b"DELETE http://x/y HTTP/1.1\r\nconnection: keep-alive, Close\r\n\r\n");
        let ParsedRequest::Simple { parts, close, .. } = p else {
            panic!("{p:?}")
        };
        assert!(close);
        assert_eq!(parts.uri.host(), Some("x"));

        let (p, rest) = request(b"GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(matches!(p, ParsedRequest::Partial));
        assert_eq!(rest.len(), 25, "a partial head stays");

        // A body up to the limit: the head is taken, the body stays for the server to read.
        let (p, rest) =
            request(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /next");
        let ParsedRequest::Simple { parts, body, .. } = p else {
            panic!("{p:?}")
        };
        assert_eq!((parts.method, body), (Method::POST, 5));
        assert_eq!(parts.headers["content-length"], "5");
        assert_eq!(&rest[..], b"helloGET /next");
        let (p, _) = request(b"PUT / HTTP/1.1\r\nContent-Length: 1024\r\n\r\n");
        assert!(
            matches!(p, ParsedRequest::Simple { body: 1024, .. }),
            "{p:?}"
        );
    }

    #[test]
    fn content_lengths_in_their_plain_form_only() {
        for (v, n) in [("0", Some(0)), ("7", Some(7)), ("123456", Some(123_456))] {
            assert_eq!(content_length(v.as_bytes()), n, "{v}");
        }
        let max = "999999999999999999";
        assert_eq!(
            content_length(max.as_bytes()),
            Some(999_999_999_999_999_999)
        );
        for v in [
            "",
            "00",
            "07",
            "+5",
            "-1",
            "5 ",
            " 5",
            "5,5",
            "0x10",
            "1e3",
            "9999999999999999999",
        ] {
            assert_eq!(content_length(v.as_bytes()), None, "{v:?}");
        }
    }

    #[test]
    fn everything_else_is_left_whole_for_hyper() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(9000));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(101));
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 00\r\n\r\n",
            b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"HELLO\r\n\r\n",
            big.as_bytes(),
            many.as_bytes(),
        ];
        for raw in cases {
            let (p, rest) = request(raw);
            assert!(
                matches!(p, ParsedRequest::Other),
                "{:?}: {p:?}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(&rest[..], *raw, "the bytes must reach hyper untouched");
        }
    }

    fn response(
        status: u16,
        headers: &[(&str, &str)],
        head_request: bool,
        end: bool,
        size: Option<u64>,
        keep_alive: bool,
    ) -> (String, Result<ResponseHeadOut, ProtocolError>) {
        let mut r = http::Response::new(());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        for (n, v) in headers {
            r.headers_mut().append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let (parts, ()) = r.into_parts();
        let mut out = Vec::new();
        let res = encode_response_head(&mut out, &parts, head_request, end, size, keep_alive);
        (String::from_utf8(out).unwrap(), res)
    }

    #[test]
    fn response_heads_frame_bodies_as_hyper_does() {
        let d = [("date", "Thu, 03 Dec 2026 10:00:00 GMT")];
        // The response's own length.
        let (h, r) = response(
            200,
            &[d[0], ("content-length", "5")],
            false,
            false,
            None,
            true,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 10:00:00 GMT\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!(r.unwrap().framing, ResponseFraming::Length(5));
        // The body's exact size; unknown → chunked (a Transfer-Encoding field is replaced).
        let (h, r) = response(404, &d, false, false, Some(7), true);
        assert!(
            h.starts_with("HTTP/1.1 404 Not Found\r\n") && h.contains("content-length: 7\r\n"),
            "{h}"
        );
        assert_eq!(r.unwrap().framing, ResponseFraming::Length(7));
        let (h, r) = response(
            200,
            &[d[0], ("transfer-encoding", "gzip")],
            false,
            false,
            None,
            true,
        );
        assert!(
            h.contains("transfer-encoding: chunked\r\n") && !h.contains("gzip"),
            "{h}"
        );
        assert_eq!(r.unwrap().framing, ResponseFraming::Chunked);
        // Empty: `content-length: 0`, and a stale length field goes.
        let (h, r) = response(
            200,
            &[d[0], ("content-length", "9")],
            false,
            true,
            Some(0),
            true,
        );
        assert!(
            h.contains("content-length: 0\r\n") && !h.contains(": 9"),
            "{h}"
        );
        assert_eq!(r.unwrap().framing, ResponseFraming::None);
        // HEAD keeps the length it was given and sends no body; 204 and 304 get no length.
        let (h, r) = response(
            200,
            &[d[0], ("content-length", "1000")],
            true,
            true,
            Some(0),
            true,
        );
        assert!(h.contains("content-length: 1000\r\n"), "{h}");
        assert_eq!(r.unwrap().framing, ResponseFraming::None);
        let (h, r) = response(
            204,
            &[d[0], ("content-length", "3")],
            false,
            false,
            None,
            true,
        );
        assert!(
            !h.contains("content-length") && !h.contains("transfer-encoding"),
            "{h}"
        );
        assert_eq!(r.unwrap().framing, ResponseFraming::None);
        let (h, _) = response(304, &d, false, false, Some(10), true);
        assert!(!h.contains("content-length"), "{h}");
        // Closing: `connection: close` once, whoever asked for it.
        let (h, r) = response(200, &d, false, true, Some(0), false);
        assert!(h.contains("connection: close\r\n"), "{h}");
        assert!(r.unwrap().last);
        let (h, r) = response(
            200,
            &[d[0], ("connection", "close")],
            false,
            true,
            Some(0),
            true,
        );
        assert_eq!(h.matches("connection").count(), 1, "{h}");
        assert!(r.unwrap().last);
        // A date is added when there is none.
        let (h, _) = response(200, &[], false, true, Some(0), true);
        assert!(
            h.contains("\r\ndate: ") && h.ends_with(" GMT\r\n\r\n"),
            "{h}"
        );
        // Conflicting or invalid lengths: an error and nothing written.
        for bad in [
            &[("content-length", "5"), ("content-length", "6")][..],
            &[("content-length", "x")],
        ] {
            let (h, r) = response(200, bad, false, false, None, true);
            assert!(r.is_err() && h.is_empty(), "{h}");
        }
    }
}
