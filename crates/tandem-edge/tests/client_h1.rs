//! The edge's HTTP/1.1 server towards clients (crates/tandem-edge/src/h1_server.rs) on raw
//! TCP and TLS: pipelined requests, every response framing, HEAD, `Connection: close`, small
//! bodies read whole (pipelined, in pieces, cut off), the hand-over to hyper's server at the
//! first request that needs it (a chunked or large body, an upgrade, a head that does not
//! parse) on a connection that already served requests, and a client that goes away
//! mid-response.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const APP: &[(&str, &[&str])] = &[("app.example.com", &["app.example.com"])];

/// One response as the client read it.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lower-cased `name: value` lines.
    head: Vec<String>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.head
            .iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// Reads responses off one connection, strictly (a framing error fails the test).
struct Reader<S> {
    s: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Reader<S> {
    fn new(s: S) -> Self {
        Reader { s, buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// More bytes, or `false` at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        let n = tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut chunk))
            .await
            .expect("the edge went silent")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8(self.buf[..i].to_vec()).unwrap();
                self.buf.drain(..i + 2);
                return l;
            }
            assert!(self.fill().await, "connection closed inside a line");
        }
    }

    async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "connection closed inside a body");
        }
        self.buf.drain(..n).collect()
    }

    /// The next response; `head_request`: it answers a HEAD (no body whatever it says).
    async fn answer(&mut self, head_request: bool) -> Answer {
        let status_line = self.line().await;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .unwrap_or_else(|| panic!("not a response: {status_line:?}"))[..3]
            .parse()
            .unwrap();
        let mut head = Vec::new();
        loop {
            let l = self.line().await;
            if l.is_empty() {
                break;
            }
            head.push(l.to_ascii_lowercase());
        }
        let mut a = Answer {
            status,
            head,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 {
            return a;
        }
        let chunked = a.header("transfer-encoding") == Some("chunked");
        let length = a
            .header("content-length")
            .map(|v| v.parse::<usize>().unwrap());
        assert!(
            !(chunked && length.is_some()),
            "both framings sent: {:?}",
            a.head
        );
        if chunked {
            loop {
                let size = usize::from_str_radix(&self.line().await, 16).unwrap();
                if size == 0 {
                    while !self.line().await.is_empty() {}
                    break;
                }
                let data = self.exact(size).await;
                a.body.extend_from_slice(&data);
                assert_eq!(self.exact(2).await, b"\r\n");
            }
        } else {
            let n = length.unwrap_or_else(|| panic!("no framing in {:?}", a.head));
            a.body = self.exact(n).await;
        }
        a
    }

    /// Whether the edge closed the connection (nothing more arrives).
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }
}

async fn edge_and_origin() -> (TestEdge, Origin) {
    let o = Origin::start("o").await;
    let t = format!(
        "[edge.routes.app]\ndomains = [\"app.example.com\"]\ngroup = \"web\"\nhttp = \"serve\"\n\
         [edge.groups.web]\n[[edge.groups.web.origins]]\nname = \"o\"\naddress = \"{}\"\n",
        o.addr
    );
    (TestEdge::start(&t, APP).await, o)
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: app.example.com\r\n{extra}\r\n").into_bytes()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_with_every_framing() {
    let (edge, _o) = edge_and_origin().await;
    let tcp = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    let mut c = Reader::new(tcp);
    // Four requests in one write: a JSON echo (length), a stream (chunked), a 1 MiB body
    // (length, written from its own buffer), a HEAD.
    let mut all = get("/one?x=1", "X-Test: a\r\n");
    all.extend(get("/stream/3/1", ""));
    all.extend(get("/big/1048576", ""));
    all.extend(b"HEAD /big/1000 HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
    c.send(&all).await;

    let a = c.answer(false).await;
    assert_eq!(a.status, 200);
    let j: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(j["uri"], "/one?x=1");
    assert_eq!(header(&j, "x-test"), Some("a"));
    assert!(header(&j, "x-forwarded-for").is_some());
    assert!(a.header("date").is_some(), "{:?}", a.head);
    assert!(a.header("x-request-id").is_some(), "{:?}", a.head);

    let a = c.answer(false).await;
    assert_eq!(a.header("transfer-encoding"), Some("chunked"));
    assert_eq!(a.text(), "chunk0;chunk1;chunk2;");

    let a = c.answer(false).await;
    assert_eq!(a.header("content-length"), Some("1048576"));
    assert_eq!(a.body.len(), 1 << 20);
    assert!(
        a.body
            .iter()
            .enumerate()
            .all(|(i, b)| *b == b'a' + (i % 26) as u8)
    );

    let a = c.answer(true).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("1000"));

    // `Connection: close`: answered with `connection: close`, then the edge closes.
    c.send(&get("/last", "Connection: close\r\n")).await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("connection"), Some("close"));
    assert!(
        c.closed().await,
        "connection left open after Connection: close"
    );
    edge.stop().await;
}

#[tokio::test]
async fn hyper_takes_over_at_the_first_request_that_needs_it() {
    let (edge, o) = edge_and_origin().await;
    let tcp = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    let mut c = Reader::new(tcp);
    c.send(&get("/before", "")).await;
    assert_eq!(c.answer(false).await.status, 200);
    // A chunked body: hyper reads it (pipelined with a GET that hyper then serves too).
    let mut two = b"POST /upload HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec();
    two.extend(get("/after", ""));
    c.send(&two).await;
    let a = c.answer(false).await;
    let j: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        (j["method"].as_str(), j["body_len"].as_u64()),
        (Some("POST"), Some(5))
    );
    let a = c.answer(false).await;
    let j: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(j["uri"], "/after");

    // A smuggling attempt after fast-path requests gets hyper's 400, and the request hidden
    // in it never reaches the origin.
    let tcp = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    let mut c = Reader::new(tcp);
    c.send(&get("/first", "")).await;
    assert_eq!(c.answer(false).await.status, 200);
    let hits = o.hits();
    c.send(b"GET / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: app.example.com\r\n\r\n").await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 400);
    assert!(c.closed().await);
    assert_eq!(o.hits(), hits, "the origin saw the smuggled request");

    // Garbage after a good request: 400 from hyper, and the connection ends.
    let tcp = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    let mut c = Reader::new(tcp);
    let mut two = get("/ok", "");
    two.extend(b"GET /\x01 HTTP/1.1\r\n\r\n");
    c.send(&two).await;
    assert_eq!(c.answer(false).await.status, 200);
    assert_eq!(c.answer(false).await.status, 400);

    // An upgrade after a fast-path request: the WebSocket echo works through hyper.
    let tcp = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    let mut c = Reader::new(tcp);
    c.send(&get("/plain", "")).await;
    assert_eq!(c.answer(false).await.status, 200);
    c.send(b"GET /ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await;
    let a = c.answer(true).await;
    assert_eq!(a.status, 101);
    c.send(b"ping over the upgrade").await;
    assert_eq!(c.exact(21).await, b"ping over the upgrade");
    drop(c);
    edge.stop().await;
}

#[tokio::test]
async fn tls_clients_get_the_same_server() {
    let (edge, _o) = edge_and_origin().await;
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    cfg.dangerous()
        .set_certificate_verifier(Arc::new(common::AnyCert));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(edge.https).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("app.example.com").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let mut c = Reader::new(tls);
    let mut all = get("/stream/2/1", "");
    all.extend(get("/big/70000", ""));
    c.send(&all).await;
    assert_eq!(c.answer(false).await.text(), "chunk0;chunk1;");
    assert_eq!(c.answer(false).await.body.len(), 70000);
    c.send(
        b"PUT /x HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    let a = c.answer(false).await;
    let j: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(j["body_len"], 3);
    assert!(c.closed().await);
    edge.stop().await;
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// What the echo origin says it received: method, target, body length and first bytes.
fn echoed(a: &Answer) -> (String, String, u64, String) {
    assert_eq!(a.status, 200, "{}", a.text());
    let j: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    (
        j["method"].as_str().unwrap().to_string(),
        j["uri"].as_str().unwrap().to_string(),
        j["body_len"].as_u64().unwrap(),
        j["body_head"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn small_bodies_are_read_whole_and_the_connection_goes_on() {
    let (edge, o) = edge_and_origin().await;
    let tcp = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    let mut c = Reader::new(tcp);
    // Pipelined in one write: a form, a GET, an API call, a body at the own server's
    // limit (16 KiB), one byte over it (hyper from there on), a GET after it.
    let mut all = post("/form", b"a=1&b=2");
    all.extend(get("/between", ""));
    all.extend(post("/api", br#"{"k":"v"}"#));
    let at_limit: Vec<u8> = (0..16 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    all.extend(post("/at-limit", &at_limit));
    all.extend(post("/over", &vec![b'z'; 16 * 1024 + 1]));
    all.extend(get("/after", ""));
    c.send(&all).await;
    let want = [
        ("POST", "/form", 7, "a=1&b=2"),
        ("GET", "/between", 0, ""),
        ("POST", "/api", 9, r#"{"k":"v"}"#),
        (
            "POST",
            "/at-limit",
            16 * 1024,
            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl",
        ),
        (
            "POST",
            "/over",
            16 * 1024 + 1,
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ),
        ("GET", "/after", 0, ""),
    ];
    for (m, u, n, head) in want {
        let got = echoed(&c.answer(false).await);
        assert_eq!(got, (m.into(), u.into(), n, head.into()));
    }

    // A head and its body in pieces, with pauses between them.
    let tcp = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    let mut c = Reader::new(tcp);
    let whole = post("/pieces", b"0123456789");
    let cut = whole.len() - 10;
    for part in [
        &whole[..cut - 3],
        &whole[cut - 3..cut + 4],
        &whole[cut + 4..],
    ] {
        c.send(part).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let got = echoed(&c.answer(false).await);
    assert_eq!(
        got,
        ("POST".into(), "/pieces".into(), 10, "0123456789".into())
    );
    // The same connection keeps serving.
    c.send(&post("/again", b"xyz")).await;
    assert_eq!(echoed(&c.answer(false).await).2, 3);

    // A client that leaves mid-body: nothing reaches the origin, and the edge serves on.
    let hits = o.hits();
    for _ in 0..10 {
        let mut s = tokio::net::TcpStream::connect(edge.http).await.unwrap();
        let whole = post("/cut", &[b'c'; 1000]);
        s.write_all(&whole[..whole.len() - 400]).await.unwrap();
        drop(s);
    }
    let r = raw(
        edge.http,
        &post("/still", b"ok"),
        Duration::from_millis(500),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(o.hits(), hits + 1, "a cut-off body reached the origin");
    edge.stop().await;
}

#[tokio::test]
async fn a_client_gone_mid_response_does_not_stop_the_edge() {
    let (edge, _o) = edge_and_origin().await;
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(edge.http).await.unwrap();
        s.write_all(&get("/big/4194304", "")).await.unwrap();
        let mut first = [0u8; 1024];
        let _ = s.read(&mut first).await.unwrap();
        drop(s);
    }
    let r = raw(
        edge.http,
        &get("/still", "Connection: close\r\n"),
        Duration::from_secs(3),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    edge.stop().await;
}
