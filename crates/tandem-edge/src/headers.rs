//! Proxy header hygiene as pure functions over header maps: hop-by-hop removal, the
//! `X-Forwarded-*` family and `Forwarded` (RFC 7239), request ids and smuggling checks.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

/// Headers that describe one connection and never cross a proxy (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The index of a hop-by-hop header in [`HOP_BY_HOP`], `Proxy-Connection` after them.
fn hop_index(n: &HeaderName) -> Option<usize> {
    HOP_BY_HOP
        .iter()
        .position(|h| h == n)
        .or_else(|| (*n == PROXY_CONNECTION).then_some(HOP_BY_HOP.len()))
}

/// Remove hop-by-hop headers, including those named in `Connection`. When `keep_upgrade` is
/// set (a WebSocket handshake being passed through), `Connection: upgrade` and `Upgrade`
/// survive.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass notes which hop-by-hop headers are present (a bit each) and whether
    // `Connection` names anything beyond `close` / `keep-alive`; most messages carry none or
    // only `Connection: keep-alive`, and then no header needs more than one removal.
    let mut present = 0u16;
    let mut names_others = false;
    for (n, v) in headers.iter() {
        // A header literally named `close` goes when `Connection: close` names it.
        names_others |= n.as_str() == "close";
        if let Some(i) = hop_index(n) {
            present |= 1 << i;
            if i == 0 {
                names_others |= v
                    .as_bytes()
                    .split(|b| *b == b',')
                    .map(<[u8]>::trim_ascii)
                    .any(|t| {
                        !t.is_empty()
                            && !t.eq_ignore_ascii_case(b"close")
                            && !t.eq_ignore_ascii_case(b"keep-alive")
                    });
            }
        }
    }
    if present == 0 && !keep_upgrade {
        return;
    }
    if names_others {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for n in named {
            if keep_upgrade && n == header::UPGRADE {
                continue;
            }
            headers.remove(n);
        }
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) == 0
            || keep_upgrade && (*n == header::CONNECTION || *n == header::UPGRADE)
        {
            continue;
        }
        headers.remove(n);
    }
    if present & (1 << HOP_BY_HOP.len()) != 0 {
        headers.remove(PROXY_CONNECTION);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether the request asks for a protocol upgrade (WebSocket over HTTP/1.1).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Why a request's framing is refused before it goes anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// Both `Content-Length` and `Transfer-Encoding`: the classic smuggling vector.
    LengthAndChunked,
    /// Several different `Content-Length` values.
    ConflictingLengths,
    /// A transfer coding other than a final `chunked`.
    BadTransferEncoding,
}

impl FramingError {
    /// A short reason for the 400 body and the log.
    pub fn reason(self) -> &'static str {
        match self {
            FramingError::LengthAndChunked => {
                "request has both Content-Length and Transfer-Encoding"
            }
            FramingError::ConflictingLengths => "request has conflicting Content-Length values",
            FramingError::BadTransferEncoding => "unsupported Transfer-Encoding",
        }
    }
}

/// Refuse ambiguous message framing (RFC 9112 6.3): a proxy that guesses differently from its
/// origin is how requests get smuggled.
pub fn check_framing(headers: &HeaderMap) -> Result<(), FramingError> {
    let te: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !te.is_empty() && !cl.is_empty() {
        return Err(FramingError::LengthAndChunked);
    }
    if let Some(first) = cl.first()
        && cl.iter().any(|v| v.as_bytes() != first.as_bytes())
    {
        return Err(FramingError::ConflictingLengths);
    }
    if !te.is_empty() {
        let codings: Vec<String> = te
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        // Only a lone `chunked` is forwarded: other codings would reach the origin without
        // the header that names them (Transfer-Encoding is hop-by-hop).
        if codings != ["chunked"] {
            return Err(FramingError::BadTransferEncoding);
        }
    }
    Ok(())
}

/// The request's host without port, lower case: `:authority` (HTTP/2) or `Host`.
pub fn request_host(uri: &http::Uri, headers: &HeaderMap) -> Option<String> {
    let raw = match uri.authority() {
        Some(a) => a.host(),
        None => strip_port(headers.get(header::HOST)?.to_str().ok()?),
    };
    let h = raw.trim_end_matches('.');
    if h.is_empty() {
        None
    } else {
        Some(h.to_ascii_lowercase())
    }
}

fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
}

/// How a client appears in forwarding headers, computed once per connection.
#[derive(Debug)]
pub struct ClientNode {
    /// The address as text, for `X-Forwarded-For`.
    pub ip: HeaderValue,
    /// The `for=` node of `Forwarded` (IPv6 quoted and bracketed, RFC 7239).
    pub node: String,
    /// The forwarding values of the connection's last host.
    last: std::sync::Mutex<Option<HostForwarding>>,
}

/// `X-Forwarded-Host` and `Forwarded` for one host, kept per connection.
#[derive(Debug)]
struct HostForwarding {
    host: Box<str>,
    scheme: &'static str,
    x_forwarded_host: Option<HeaderValue>,
    forwarded: Option<HeaderValue>,
}

impl ClientNode {
    /// For a client address.
    pub fn new(client: SocketAddr) -> Self {
        let ip = client.ip();
        let text = ip.to_string();
        ClientNode {
            ip: HeaderValue::from_str(&text)
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            node: match ip {
                IpAddr::V4(_) => text,
                IpAddr::V6(_) => format!("\"[{text}]\""),
            },
            last: std::sync::Mutex::new(None),
        }
    }
}

/// Fields the proxy adds to the request it sends to an origin. They go straight into the
/// origin request's head after the request's own fields instead of into its header map,
/// which on a request with few fields (the usual HTTP/2 request, whose map h2 sizes to what
/// arrived) would have to grow: reallocate and rehash.
pub type AddedFields = SmallVec<[(HeaderName, HeaderValue); 6]>;

/// Set `name` to `value` in the origin's request: the client's own values of it are dropped.
pub fn set_added(
    headers: &mut HeaderMap,
    added: &mut AddedFields,
    name: HeaderName,
    value: HeaderValue,
) {
    headers.remove(&name);
    added.push((name, value));
}

/// Append the client to `X-Forwarded-For` and `Forwarded`, and set `X-Forwarded-Proto` and
/// `X-Forwarded-Host`: the client's values are taken out of `headers`, the new ones go to
/// `added`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    added: &mut AddedFields,
    client: &ClientNode,
    scheme: &str,
    host: &str,
) {
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            let mut xff = String::with_capacity(prev.len() + 2 + client.ip.len());
            xff.push_str(prev);
            xff.push_str(", ");
            xff.push_str(client.ip.to_str().unwrap_or(""));
            HeaderValue::from_str(&xff).ok()
        }
        _ => Some(client.ip.clone()),
    };
    // A list that could not be extended (not visible text) is passed on as it came.
    if let Some(v) = xff {
        set_added(headers, added, X_FORWARDED_FOR, v);
    }
    set_added(
        headers,
        added,
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if scheme == "https" { "https" } else { "http" }),
    );
    let prev = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .filter(|p| !p.trim().is_empty());
    // Without an earlier `Forwarded`, both values depend only on the connection and the
    // host: the connection keeps the last pair (a keep-alive connection asks for one host).
    let (x_forwarded_host, forwarded) = match prev {
        None => {
            let mut last = client.last.lock().unwrap_or_else(|e| e.into_inner());
            match last
                .as_ref()
                .filter(|f| &*f.host == host && f.scheme == scheme)
            {
                Some(f) => (f.x_forwarded_host.clone(), f.forwarded.clone()),
                None => {
                    let f = HostForwarding {
                        host: host.into(),
                        scheme: if scheme == "https" { "https" } else { "http" },
                        x_forwarded_host: HeaderValue::from_str(host).ok(),
                        forwarded: forwarded_value(None, client, scheme, host),
                    };
                    let values = (f.x_forwarded_host.clone(), f.forwarded.clone());
                    *last = Some(f);
                    values
                }
            }
        }
        Some(prev) => (
            HeaderValue::from_str(host).ok(),
            forwarded_value(Some(prev), client, scheme, host),
        ),
    };
    match x_forwarded_host {
        Some(v) => set_added(headers, added, X_FORWARDED_HOST, v),
        // Not a valid field value: the client's own value is not passed on either.
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    if let Some(v) = forwarded {
        set_added(headers, added, header::FORWARDED, v);
    }
}

/// `Forwarded` with this hop appended to `prev`.
fn forwarded_value(
    prev: Option<&str>,
    client: &ClientNode,
    scheme: &str,
    host: &str,
) -> Option<HeaderValue> {
    let host_ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    let mut fwd = String::with_capacity(
        prev.map_or(0, |p| p.len() + 2) + client.node.len() + host.len() + 32,
    );
    if let Some(p) = prev {
        fwd.push_str(p);
        fwd.push_str(", ");
    }
    fwd.push_str("for=");
    fwd.push_str(&client.node);
    fwd.push_str(";host=");
    if host_ok {
        fwd.push_str(host);
    } else {
        fwd.push('"');
        fwd.extend(host.chars().filter(|c| *c != '"' && *c != '\\'));
        fwd.push('"');
    }
    fwd.push_str(";proto=");
    fwd.push_str(scheme);
    HeaderValue::from_str(&fwd).ok()
}

/// Request ids: a random per-process prefix and a counter, 32 hex digits; unique without
/// coordination and cheap to make.
///
/// Ids are made 64 at a time per thread into one shared buffer, and each id is a slice of
/// it: an id costs no allocation of its own, and every copy of it (the origin's request, the
/// client's response, the access log) only counts a reference.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds {
            prefix: rand::random(),
            counter: AtomicU64::new(rand::random::<u32>() as u64),
        }
    }
}

const ID_LEN: usize = 32;
const ID_BATCH: usize = 64;

/// One thread's ids in reserve: `next` of the batch in `buf` are taken; `owner` is the
/// prefix of the [`RequestIds`] that reserved them (several edges may share a thread).
struct IdBatch {
    owner: u64,
    buf: Bytes,
    next: usize,
}

thread_local! {
    static ID_BATCHES: std::cell::RefCell<IdBatch> = const {
        std::cell::RefCell::new(IdBatch { owner: 0, buf: Bytes::new(), next: ID_BATCH })
    };
}

impl RequestIds {
    /// The next id.
    pub fn next(&self) -> HeaderValue {
        let id = ID_BATCHES.with_borrow_mut(|b| {
            if b.owner != self.prefix || b.next == ID_BATCH {
                let first = self.counter.fetch_add(ID_BATCH as u64, Ordering::Relaxed);
                let mut buf = Vec::with_capacity(ID_LEN * ID_BATCH);
                for n in first..first + ID_BATCH as u64 {
                    push_hex(&mut buf, self.prefix);
                    push_hex(&mut buf, n);
                }
                *b = IdBatch {
                    owner: self.prefix,
                    buf: Bytes::from(buf),
                    next: 0,
                };
            }
            let at = b.next * ID_LEN;
            b.next += 1;
            b.buf.slice(at..at + ID_LEN)
        });
        let mut v =
            HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("0"));
        // Unique per request: HPACK sends it as a literal that is never indexed, instead of
        // inserting every id into the HTTP/2 connection's table (which evicts the entries that
        // do repeat and compares each new id with every id still in the table).
        v.set_sensitive(true);
        v
    }
}

fn push_hex(buf: &mut Vec<u8>, word: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for j in 0..16 {
        buf.push(HEX[((word >> (60 - 4 * j)) & 0xf) as usize]);
    }
}

/// Bytes of the request's header block, as a client would have sent it over HTTP/1.1 (used to
/// apply one header limit to HTTP/1.1 and HTTP/2 alike).
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

/// The value of one cookie from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// One query parameter's raw value (not percent-decoded).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("accept", "*/*"),
            ("proxy-connection", "keep-alive"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn connection_close_and_keep_alive_strip_only_what_they_name() {
        // The common origin answer: only `Connection` itself goes.
        let mut h = map(&[("connection", "keep-alive"), ("content-length", "2")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        // `close` names a header too, when there is one by that name.
        let mut h = map(&[("connection", "close"), ("close", "x"), ("a", "1")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("a"));
        // Several Connection headers, one naming a custom header.
        let mut h = map(&[
            ("connection", "close"),
            ("connection", " X-Hop "),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("b", "2"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("b"));
    }

    #[test]
    fn upgrade_survives_when_asked() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get("upgrade").map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            h.get("connection").map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        assert_eq!(
            check_framing(&map(&[
                ("content-length", "5"),
                ("transfer-encoding", "chunked")
            ])),
            Err(FramingError::LengthAndChunked)
        );
        assert_eq!(
            check_framing(&map(&[("content-length", "5"), ("content-length", "6")])),
            Err(FramingError::ConflictingLengths)
        );
        assert_eq!(
            check_framing(&map(&[("transfer-encoding", "chunked, gzip")])),
            Err(FramingError::BadTransferEncoding)
        );
        assert_eq!(
            check_framing(&map(&[("transfer-encoding", "chunked, chunked")])),
            Err(FramingError::BadTransferEncoding)
        );
        assert!(check_framing(&map(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(check_framing(&map(&[("content-length", "5"), ("content-length", "5")])).is_ok());
    }

    /// The value `add_forwarded` gave `name`, and that the map no longer has its own.
    fn added_value<'a>(h: &HeaderMap, added: &'a AddedFields, name: &str) -> &'a HeaderValue {
        assert!(!h.contains_key(name), "{name} left in the map");
        let mut it = added.iter().filter(|(n, _)| n == name);
        let (_, v) = it.next().unwrap_or_else(|| panic!("{name} not added"));
        assert!(it.next().is_none(), "{name} added twice");
        v
    }

    #[test]
    fn forwarded_headers_append() {
        let mut h = map(&[
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-proto", "ftp"),
            ("x-forwarded-host", "spoofed.test"),
            ("accept", "*/*"),
        ]);
        let mut added = AddedFields::new();
        add_forwarded(
            &mut h,
            &mut added,
            &ClientNode::new("[2001:db8::5]:1234".parse().expect("addr")),
            "https",
            "app.example.com",
        );
        assert_eq!(
            added_value(&h, &added, "x-forwarded-for"),
            "192.0.2.1, 2001:db8::5"
        );
        assert_eq!(added_value(&h, &added, "x-forwarded-proto"), "https");
        assert_eq!(
            added_value(&h, &added, "x-forwarded-host"),
            "app.example.com"
        );
        assert_eq!(
            added_value(&h, &added, "forwarded"),
            "for=\"[2001:db8::5]\";host=app.example.com;proto=https"
        );
        assert_eq!(added.len(), 4);
        assert_eq!(h["accept"], "*/*");
        // One connection, requests for different hosts and with an earlier Forwarded: the
        // per-connection values follow the host and never hide an earlier hop.
        let node = ClientNode::new("192.0.2.9:1".parse().expect("addr"));
        for (host, prev, want) in [
            ("a.test", None, "for=192.0.2.9;host=a.test;proto=http"),
            ("a.test", None, "for=192.0.2.9;host=a.test;proto=http"),
            ("b.test", None, "for=192.0.2.9;host=b.test;proto=http"),
            (
                "b.test",
                Some("for=10.0.0.1"),
                "for=10.0.0.1, for=192.0.2.9;host=b.test;proto=http",
            ),
            ("a.test", None, "for=192.0.2.9;host=a.test;proto=http"),
        ] {
            let mut h = map(&prev.map(|p| vec![("forwarded", p)]).unwrap_or_default());
            let mut added = AddedFields::new();
            add_forwarded(&mut h, &mut added, &node, "http", host);
            assert_eq!(added_value(&h, &added, "forwarded"), want);
            assert_eq!(added_value(&h, &added, "x-forwarded-host"), host);
            assert_eq!(added_value(&h, &added, "x-forwarded-for"), "192.0.2.9");
        }
    }

    #[test]
    fn hosts_cookies_queries() {
        let uri: http::Uri = "/x".parse().expect("uri");
        assert_eq!(
            request_host(&uri, &map(&[("host", "App.Example.com:8443")])).as_deref(),
            Some("app.example.com")
        );
        assert_eq!(
            request_host(&uri, &map(&[("host", "[::1]:80")])).as_deref(),
            Some("::1")
        );
        let h = map(&[("cookie", "a=1; tandem_affinity=abc"), ("cookie", "b=2")]);
        assert_eq!(cookie(&h, "tandem_affinity"), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(query_param("a=1&b=&c", "b"), Some(""));
        assert_eq!(query_param("a=1&b=&c", "c"), Some(""));
        assert_eq!(query_param("a=1", "z"), None);
    }

    #[test]
    fn request_ids_are_unique() {
        let ids = RequestIds::default();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(
            a.to_str()
                .expect("ascii")
                .bytes()
                .all(|c| c.is_ascii_hexdigit())
        );
    }

    #[test]
    fn request_ids_stay_unique_across_batches_threads_and_edges() {
        // Two edges on one thread (their batches alternate) and a second thread: more ids
        // than several batches, none repeated.
        let (x, y) = (Arc::new(RequestIds::default()), RequestIds::default());
        let other = {
            let x = x.clone();
            std::thread::spawn(move || (0..300).map(|_| x.next()).collect::<Vec<_>>())
        };
        let mut all = std::collections::HashSet::new();
        for _ in 0..300 {
            assert!(all.insert(x.next()));
            assert!(all.insert(y.next()));
        }
        for v in other.join().expect("thread") {
            assert_eq!(v.len(), 32);
            assert!(all.insert(v));
        }
        assert_eq!(all.len(), 900);
    }
}
