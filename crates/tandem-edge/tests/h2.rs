//! HTTP/2 at the edge with real clients (reqwest over TLS, the h2 crate's client over
//! prior knowledge, raw frames): bodies both ways past the flow-control windows, many
//! streams at once on one connection, a client's reset cancelling the origin exchange,
//! keep-alive pings for silent peers only, closing a connection whose peer stopped
//! answering, header blocks bigger than a frame both ways (HEADERS + CONTINUATION, through
//! the vendored h2's boxed header blocks), and malformed frames ending a connection with
//! GOAWAY while the edge keeps serving.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn serve_all(origin: SocketAddr, extra: &str) -> String {
    format!(
        "{extra}\n[edge.routes.app]\ndomains = [\"*\"]\ngroup = \"web\"\nhttp = \"serve\"\n\
         [edge.groups.web]\n[[edge.groups.web.origins]]\nname = \"o\"\naddress = \"{origin}\"\n"
    )
}

const APP: &[(&str, &[&str])] = &[("app", &["app.example.com"])];

#[tokio::test]
async fn bodies_past_the_windows_and_many_streams_on_one_connection() {
    let a = Origin::start("a").await;
    let edge = TestEdge::start(&serve_all(a.addr, ""), APP).await;
    let c = edge.client(&["app.example.com"]);
    const BIG: usize = 3 << 20; // three times the 1 MiB stream and connection windows

    // Upload with a Content-Length, and streamed without one.
    let r = c
        .post(edge.url("app.example.com", "/echo"))
        .body(vec![b'x'; BIG])
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["body_len"], BIG);
    let chunks = (0..48).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 64 << 10])));
    let r = c
        .post(edge.url("app.example.com", "/echo"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["body_len"], 48 << 16);

    // Download: every byte arrives, in order.
    let r = c
        .get(edge.url("app.example.com", &format!("/big/{BIG}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("date"));
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), BIG);
    assert!(
        body.iter()
            .enumerate()
            .all(|(i, b)| *b == b'a' + (i % 26) as u8)
    );

    // 150 slow requests at once share the one connection and run side by side: one at a
    // time they would take 30 s.
    let started = std::time::Instant::now();
    let all = (0..150).map(|_| {
        let c = c.clone();
        let url = edge.url("app.example.com", "/slow/200");
        async move { c.get(url).send().await.map(|r| r.status()) }
    });
    let statuses = futures::future::join_all(all).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(s) if *s == 200)),
        "{statuses:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "streams were served one after another: {:?}",
        started.elapsed()
    );
    edge.stop().await;
}

/// Header blocks bigger than one frame (16 KiB), both ways: the client's request head
/// arrives as HEADERS + CONTINUATION and reaches the origin intact, the response head the
/// edge adds to leaves the same way, and a head over the edge's limit is refused with 431.
#[tokio::test]
async fn header_blocks_past_one_frame_both_ways() {
    let a = Origin::start("a").await;
    let big: String = (0..24_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let rules = format!(
        "[edge.limits]\nmax_header_bytes = \"48KiB\"\n\
         [[edge.rules]]\nname = \"big\"\n\
         conditions = [{{ field = \"path\", op = \"prefix\", value = \"/big-head\" }}]\n\
         actions = [{{ action = \"response_header\", op = \"set\", name = \"x-big\", value = \"{big}\" }}]\n"
    );
    let edge = TestEdge::start(&serve_all(a.addr, &rules), APP).await;
    // reqwest (hyper) accepts 16 KiB of response head by default.
    let c = edge
        .client_builder(&["app.example.com"])
        .http2_max_header_list_size(64 << 10)
        .build()
        .unwrap();
    for round in 0..3 {
        let r = c
            .get(edge.url("app.example.com", "/big-head"))
            .header("x-big-request", &big)
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200, "round {round}");
        assert_eq!(
            r.headers().get("x-big").map(|v| v.as_bytes()),
            Some(big.as_bytes()),
            "the response head, round {round}"
        );
        let j = json(r).await;
        assert_eq!(
            header(&j, "x-big-request"),
            Some(big.as_str()),
            "the request head, round {round}"
        );
    }
    // Over the limit: refused, and the connection still serves.
    let r = c
        .get(edge.url("app.example.com", "/"))
        .header("x-too-big", big.repeat(3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let r = c
        .get(edge.url("app.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    edge.stop().await;
}

/// An origin that takes a request and never answers; it notes when the edge closes the
/// connection.
struct SilentOrigin {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

async fn silent_origin() -> SilentOrigin {
    let requests = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let (reqs, cl) = (requests.clone(), closed.clone());
    let addr = raw_origin(move |mut s| {
        let (reqs, cl) = (reqs.clone(), cl.clone());
        async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        cl.store(true, Ordering::SeqCst);
                        return;
                    }
                    Ok(n) => {
                        seen.extend_from_slice(&buf[..n]);
                        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            reqs.fetch_add(1, Ordering::SeqCst);
                            seen.clear();
                        }
                    }
                }
            }
        }
    })
    .await;
    SilentOrigin {
        addr,
        requests,
        closed,
    }
}

#[tokio::test]
async fn a_client_reset_cancels_the_origin_exchange() {
    let o = silent_origin().await;
    let a = Origin::start("a").await;
    let t = format!(
        "{}\n[edge.routes.fast]\ndomains = [\"*\"]\npaths = [\"/fast\"]\ngroup = \"fast\"\nhttp = \"serve\"\n\
         [edge.groups.fast]\n[[edge.groups.fast.origins]]\nname = \"a\"\naddress = \"{}\"\n",
        serve_all(o.addr, "[edge.timeouts]\nfirst_byte = \"60s\""),
        a.addr
    );
    let edge = TestEdge::start(&t, APP).await;
    // HTTP/2 with prior knowledge on the plain listener.
    let tcp = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut send = send.ready().await.unwrap();
    let req = http::Request::get(format!("http://app.example.com:{}/wait", edge.http.port()))
        .body(())
        .unwrap();
    let (resp, mut stream) = send.send_request(req, true).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while o.requests.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!o.closed.load(Ordering::SeqCst));
    stream.send_reset(h2::Reason::CANCEL);
    drop(resp);
    // The edge drops the exchange at once, not when the 60 s first-byte timeout ends it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !o.closed.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the origin exchange outlived the client's reset"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The connection still serves other streams.
    let mut send = send.ready().await.unwrap();
    let req = http::Request::get(format!("http://app.example.com:{}/fast", edge.http.port()))
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-origin"], "a");
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    let j: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(j["uri"], "/fast");
    assert_eq!(j["method"], "GET");
    edge.stop().await;
}

/// Frame types in a raw HTTP/2 byte stream (RFC 9113 §4.1), as far as whole frames go.
fn frame_types(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while b.len() >= 9 {
        let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        out.push(b[3]);
        b = &b[(9 + len).min(b.len())..];
    }
    out
}

#[tokio::test]
async fn an_unanswered_keep_alive_ping_closes_the_connection() {
    let a = Origin::start("a").await;
    // Pings every idle / 2; a ping still unanswered at the next one ends the connection.
    let edge = TestEdge::start(&serve_all(a.addr, "[edge.timeouts]\nidle = \"1s\""), APP).await;
    let mut s = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    // The preface and an empty SETTINGS frame; then silence (no ACKs, no PING answers).
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the connection stayed open");
    let types = frame_types(&got);
    assert_eq!(types.first(), Some(&0x4), "SETTINGS first: {types:?}");
    assert!(types.contains(&0x6), "no PING was sent: {types:?}");
    assert_eq!(
        types.last(),
        Some(&0x7),
        "no GOAWAY before the close: {types:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    edge.stop().await;
}

/// A client that keeps sending frames is not pinged; once it falls silent it is, within two
/// keep-alive intervals (the vendored hyper notes reads with a flag and folds them into the
/// keep-alive clock only when its timer fires: third_party/hyper/TANDEM-PATCH.md).
#[tokio::test]
async fn a_talking_client_is_not_pinged_and_a_silent_one_is() {
    let a = Origin::start("a").await;
    // idle 1 s: a ping after 0.5 s without frames (at most 1 s with the patch).
    let edge = TestEdge::start(&serve_all(a.addr, "[edge.timeouts]\nidle = \"1s\""), APP).await;
    let s = tokio::net::TcpStream::connect(edge.http).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = tokio::spawn({
        let got = got.clone();
        async move {
            let mut buf = [0u8; 16384];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
                got.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }
    });
    // Preface, empty SETTINGS, ACK of the server's SETTINGS.
    wr.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0\0\0\0\x04\x01\0\0\0\0")
        .await
        .unwrap();
    // GET / for app.example.com: static-table :method GET, :scheme http, :path /, and
    // :authority as a literal without indexing.
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 15];
    block.extend_from_slice(b"app.example.com");
    let requests = 16u32;
    let mut last_frame = std::time::Instant::now();
    for i in 0..requests {
        let mut frame = vec![0, 0, block.len() as u8, 0x1, 0x5];
        frame.extend_from_slice(&(2 * i + 1).to_be_bytes());
        frame.extend_from_slice(&block);
        wr.write_all(&frame).await.unwrap();
        last_frame = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // 2.4 s of talking, almost five keep-alive intervals: no PING.
    let talked = got.lock().unwrap().clone();
    let types = frame_types(&talked);
    assert!(!types.contains(&0x6), "pinged while talking: {types:?}");
    assert_eq!(
        types.iter().filter(|t| **t == 0x1).count(),
        requests as usize,
        "one HEADERS answer per request: {types:?}"
    );
    // Silence: a PING within two intervals (and some slack for a slow runner).
    let silent = std::time::Instant::now();
    let pinged = loop {
        let now = got.lock().unwrap().clone();
        if frame_types(&now[talked.len()..]).contains(&0x6) {
            break true;
        }
        if silent.elapsed() > Duration::from_secs(4) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(pinged, "no PING after the client fell silent");
    // Not before one interval of silence.
    let quiet = last_frame.elapsed();
    assert!(quiet >= Duration::from_millis(450), "{quiet:?}");
    drop(wr);
    reader.abort();
    edge.stop().await;
}

#[tokio::test]
async fn malformed_frames_end_the_connection_with_goaway_and_nothing_else() {
    let a = Origin::start("a").await;
    let edge = TestEdge::start(&serve_all(a.addr, ""), APP).await;
    let bad: [&[u8]; 3] = [
        // SETTINGS whose length is not a multiple of six.
        b"\0\0\x05\x04\0\0\0\0\0abcde",
        // HEADERS on stream 0.
        b"\0\0\x01\x01\x05\0\0\0\0\x82",
        // A header block that does not decode (an index past both tables).
        b"\0\0\x01\x01\x05\0\0\0\x01\xff",
    ];
    for frame in bad {
        let mut s = tokio::net::TcpStream::connect(edge.http).await.unwrap();
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0".to_vec();
        out.extend_from_slice(frame);
        s.write_all(&out).await.unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "the connection stayed open after {frame:?}");
        let types = frame_types(&got);
        assert_eq!(
            types.last(),
            Some(&0x7),
            "no GOAWAY after {frame:?}: {types:?}"
        );
    }
    // Still serving, over both protocols.
    let r = edge
        .client(&["app.example.com"])
        .get(edge.url("app.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    edge.stop().await;
}
