//! The edge's HTTP/1.1 towards origins (crates/tandem-edge/src/h1.rs and client.rs) against
//! a scripted origin on raw TCP: every response framing RFC 9112 allows, interim responses,
//! broken and hostile responses, early answers to uploads, request bodies of known and
//! unknown length, and which connections are reused.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const APP: &[(&str, &[&str])] = &[("app", &["app.example.com"])];

/// A scripted origin: the request path picks the answer; the default echoes the request body
/// and names its framing in `X-Framing`. Counts connections.
struct Scripted {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicU64>,
}

fn find(buf: &[u8], pat: &[u8]) -> Option<usize> {
    buf.windows(pat.len()).position(|w| w == pat)
}

async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// The request head (lowercased), or `None` when the connection ended.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            return Some(head);
        }
        if !fill(s, buf).await {
            return None;
        }
    }
}

/// The request body per its framing, and the framing's name.
async fn read_body<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    head: &str,
) -> Option<(String, Vec<u8>)> {
    if head.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            let Some(lf) = find(buf, b"\r\n") else {
                if !fill(s, buf).await {
                    return None;
                }
                continue;
            };
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&buf[..lf])
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .ok()?;
            while buf.len() < lf + 2 + size + 2 {
                if !fill(s, buf).await {
                    return None;
                }
            }
            body.extend_from_slice(&buf[lf + 2..lf + 2 + size]);
            buf.drain(..lf + 2 + size + 2);
            if size == 0 {
                return Some(("chunked".into(), body));
            }
        }
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse::<usize>().unwrap());
    match len {
        Some(n) => {
            while buf.len() < n {
                if !fill(s, buf).await {
                    return None;
                }
            }
            Some(("length".into(), buf.drain(..n).collect()))
        }
        None => Some(("none".into(), Vec::new())),
    }
}

/// Answer requests on one connection as the path says.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut s, &mut buf).await {
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        if path == "/early" {
            // Answer an upload at once, without reading it, and close.
            let _ = s
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!")
                    .await;
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        }
        let Some((framing, body)) = read_body(&mut s, &mut buf, &head).await else {
            return;
        };
        let (resp, close): (Vec<u8>, bool) = match path.as_str() {
                "/chunked" => (
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Checksum: 42\r\n\r\n".to_vec(),
                    false,
                ),
                "/close" => (
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec(),
                    true,
                ),
                "/http10" => (
                    b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nold ok".to_vec(),
                    true,
                ),
                "/interim" => (
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal".to_vec(),
                    false,
                ),
                "/badlen" => (
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
                    true,
                ),
                "/both" => (
                    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nboth\r\n0\r\n\r\n".to_vec(),
                    false,
                ),
                "/truncated" => (
                    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b".to_vec(),
                    true,
                ),
                "/garbage" => (b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec(), true),
                "/split" => {
                    // The head and body in many small writes.
                    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: b\r\n\r\nsplit reply";
                    for c in raw.chunks(3) {
                        if s.write_all(c).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    continue;
                }
                _ => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nX-Framing: {framing}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    (r, false)
                }
            };
        if s.write_all(&resp).await.is_err() || close {
            return;
        }
    }
}

impl Scripted {
    async fn start() -> Scripted {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let conns = connections.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(s));
            }
        });
        Scripted { addr, connections }
    }

    /// The same over TLS, with a certificate for 127.0.0.1 from `pki`.
    async fn start_tls(pki: &Pki) -> Scripted {
        use rustls_pki_types::pem::PemObject;
        let issued = pki.issue("origin", &["127.0.0.1"]);
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(&issued.cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&issued.key).unwrap();
        let cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let conns = connections.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        serve(tls).await;
                    }
                });
            }
        });
        Scripted { addr, connections }
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn edge_for(o: &Scripted) -> TestEdge {
    edge_with(o, "", "").await
}

/// An edge with one route to `o`; `edge_extra` goes into `[edge]`, `origin_extra` into the
/// origin's table.
async fn edge_with(o: &Scripted, edge_extra: &str, origin_extra: &str) -> TestEdge {
    let t = format!(
        "{edge_extra}\n[edge.routes.app]\ndomains = [\"app.example.com\"]\ngroup = \"web\"\n\
         [edge.groups.web]\nretries = 0\n[[edge.groups.web.origins]]\nname = \"scripted\"\naddress = \"{}\"\n{origin_extra}\n",
        o.addr
    );
    TestEdge::start(&t, APP).await
}

fn client(edge: &TestEdge) -> reqwest::Client {
    edge.client_builder(&["app.example.com"])
        .http1_only()
        .build()
        .unwrap()
}

#[tokio::test]
async fn every_response_framing_reaches_the_client_whole() {
    let o = Scripted::start().await;
    let edge = edge_for(&o).await;
    let c = client(&edge);
    let get = |p: &str| c.get(edge.url("app.example.com", p)).send();

    // Chunked, with extensions and trailers; the connection is reused afterwards.
    let r = get("/chunked").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello, world");
    let r = get("/plain").await.unwrap();
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(
        o.connections(),
        1,
        "a chunked response keeps the connection"
    );

    // Read to the close, and an HTTP/1.0 answer: whole bodies, connections not reused.
    let r = get("/close").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "until the end");
    let r = get("/http10").await.unwrap();
    assert_eq!(r.text().await.unwrap(), "old ok");
    let before = o.connections();
    let r = get("/plain").await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    assert_eq!(
        o.connections(),
        before + 1,
        "a closed connection is not reused"
    );

    // Interim 1xx responses are skipped; the final one comes through.
    let r = get("/interim").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "final");

    // A head and body that trickle in.
    let r = get("/split").await.unwrap();
    assert_eq!(r.headers()["x-a"], "b");
    assert_eq!(r.text().await.unwrap(), "split reply");

    // Both framings from the origin: chunked wins, Content-Length is not passed on, and the
    // connection is closed after the response.
    let before = o.connections();
    let r = get("/both").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none());
    assert_eq!(r.text().await.unwrap(), "both");
    let r = get("/plain").await.unwrap();
    r.bytes().await.unwrap();
    assert_eq!(o.connections(), before + 1);
    edge.stop().await;
}

#[tokio::test]
async fn broken_origin_responses_get_502_or_an_aborted_body_and_the_edge_carries_on() {
    let o = Scripted::start().await;
    let edge = edge_for(&o).await;
    let c = client(&edge);
    for path in ["/badlen", "/garbage"] {
        let r = c
            .get(edge.url("app.example.com", path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502, "{path}");
    }
    // A body cut short: the client must not take it for a whole one (the edge aborts the
    // response, before or after its head went out).
    if let Ok(r) = c
        .get(edge.url("app.example.com", "/truncated"))
        .send()
        .await
    {
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.is_err(), "a truncated body looked complete");
    }
    // And the edge still serves.
    let c = client(&edge);
    let r = c
        .get(edge.url("app.example.com", "/chunked"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hello, world");
    edge.stop().await;
}

#[tokio::test]
async fn request_bodies_go_with_their_length_or_chunked() {
    let o = Scripted::start().await;
    let edge = edge_for(&o).await;
    let c = client(&edge);
    let url = edge.url("app.example.com", "/echo");

    let r = c.post(&url).body("known length").send().await.unwrap();
    assert_eq!(r.headers()["x-framing"], "length");
    assert_eq!(r.text().await.unwrap(), "known length");

    // A streamed body of unknown length, in pieces, larger than one read buffer.
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = (0..64)
        .map(|i| Ok(bytes::Bytes::from(vec![b'a' + (i % 26) as u8; 1000])))
        .collect();
    let expected: Vec<u8> = (0..64)
        .flat_map(|i| vec![b'a' + (i % 26) as u8; 1000])
        .collect();
    let r = c
        .put(&url)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-framing"], "chunked");
    assert_eq!(r.bytes().await.unwrap(), expected);

    // An empty POST says so with Content-Length: 0.
    let r = c.post(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-framing"], "length");
    r.bytes().await.unwrap();
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-framing"], "none");
    r.bytes().await.unwrap();
    assert_eq!(o.connections(), 1, "all of them on one origin connection");
    edge.stop().await;
}

#[tokio::test]
async fn an_origin_that_answers_an_upload_early_is_heard() {
    let o = Scripted::start().await;
    let edge = edge_for(&o).await;
    let c = client(&edge);
    // 8 MiB, streamed slowly enough that the origin's answer comes first; the origin never
    // reads it, so the edge must watch for the answer while it sends.
    let pieces = futures::stream::unfold(0u32, |i| async move {
        if i == 128 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 64 * 1024])),
            i + 1,
        ))
    });
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        c.post(edge.url("app.example.com", "/early"))
            .body(reqwest::Body::wrap_stream(pieces))
            .send(),
    )
    .await
    .expect("the edge hung on an origin that answered early");
    // The client may see the answer, or (having not finished its upload) a reset; never a
    // hang, and never a 2xx.
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    // The edge still serves, on a fresh origin connection.
    let c = client(&edge);
    let r = c
        .get(edge.url("app.example.com", "/plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    edge.stop().await;
}

#[tokio::test]
async fn tls_origins_get_the_same_protocol_and_pooling() {
    let pki = Pki::new();
    let o = Scripted::start_tls(&pki).await;
    let ca = pki.ca_path();
    let edge = edge_with(
        &o,
        &format!("origin_ca_file = \"{}\"", ca.display()),
        "tls = true",
    )
    .await;
    let c = client(&edge);
    let url = |p: &str| edge.url("app.example.com", p);
    let r = c.post(url("/echo")).body("over tls").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "over tls");
    let r = c.get(url("/chunked")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello, world");
    let r = c.get(url("/split")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "split reply");
    assert_eq!(o.connections(), 1, "one TLS connection carried all three");
    let r = c.get(url("/close")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "until the end");
    edge.stop().await;

    // An origin whose certificate the edge does not trust is a connect failure: 502.
    let o = Scripted::start_tls(&Pki::new()).await;
    let edge = edge_with(&o, "", "tls = true").await;
    let r = client(&edge)
        .get(edge.url("app.example.com", "/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    edge.stop().await;
}
