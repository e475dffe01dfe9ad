//! h1-spike LISTEN ORIGIN: proxy plain HTTP/1.1 from LISTEN to ORIGIN on one thread.
//!
//! Per request: parse the head with httparse, forward it with an added
//! `X-Forwarded-For` over a pooled origin connection, parse the response head, forward head
//! and Content-Length body, put the origin connection back. Requests with a body other than
//! `Content-Length`, and responses without one, close the connection: enough for the
//! benchmark's GETs of a 64-byte answer, not for anything else.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Pool = Rc<RefCell<Vec<TcpStream>>>;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .expect("LISTEN")
        .parse()
        .expect("LISTEN address");
    let origin: SocketAddr = args
        .next()
        .expect("ORIGIN")
        .parse()
        .expect("ORIGIN address");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(listen).await?;
        let pool: Pool = Rc::new(RefCell::new(Vec::new()));
        loop {
            let (s, peer) = listener.accept().await?;
            let _ = s.set_nodelay(true);
            let pool = pool.clone();
            tokio::task::spawn_local(async move {
                let _ = serve(s, peer, origin, pool).await;
            });
        }
    })
}

/// Where the head ends and the body's length, or `None` if incomplete.
fn content_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(8192);
    }
    let n = s.read_buf(buf).await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(n)
}

async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    origin: SocketAddr,
    pool: Pool,
) -> io::Result<()> {
    let mut cbuf: Vec<u8> = Vec::with_capacity(8192);
    let mut obuf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    let xff = format!("X-Forwarded-For: {}\r\n", peer.ip());
    loop {
        // Request head.
        let (head_len, body_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            match req.parse(&cbuf) {
                Ok(httparse::Status::Complete(n)) => {
                    let body = content_length(req.headers).unwrap_or(0);
                    out.clear();
                    out.extend_from_slice(&cbuf[..n - 2]);
                    out.extend_from_slice(xff.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    break (n, body);
                }
                Ok(httparse::Status::Partial) => {
                    if read_more(&mut client, &mut cbuf).await.is_err() {
                        return Ok(());
                    }
                }
                Err(_) => {
                    client.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
                    return Ok(());
                }
            }
        };
        while cbuf.len() < head_len + body_len {
            read_more(&mut client, &mut cbuf).await?;
        }
        out.extend_from_slice(&cbuf[head_len..head_len + body_len]);
        cbuf.drain(..head_len + body_len);
        // Origin.
        let pooled = pool.borrow_mut().pop();
        let mut o = match pooled {
            Some(o) => o,
            None => {
                let o = TcpStream::connect(origin).await?;
                let _ = o.set_nodelay(true);
                o
            }
        };
        o.write_all(&out).await?;
        obuf.clear();
        let (head_len, body_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut hs);
            match resp.parse(&obuf) {
                Ok(httparse::Status::Complete(n)) => {
                    let Some(body) = content_length(resp.headers) else {
                        return Ok(());
                    };
                    break (n, body);
                }
                Ok(httparse::Status::Partial) => {
                    read_more(&mut o, &mut obuf).await?;
                }
                Err(_) => return Ok(()),
            }
        };
        while obuf.len() < head_len + body_len {
            read_more(&mut o, &mut obuf).await?;
        }
        client.write_all(&obuf[..head_len + body_len]).await?;
        pool.borrow_mut().push(o);
    }
}
