//! The edge's own HTTP/1.1 request reader (`h1::parse_request`, crates/tandem-edge/src/h1.rs)
//! on arbitrary client bytes, whole and fed in pieces of the size the first byte picks, with
//! limits the second byte picks. It may not panic, and what it does not take must stay in the
//! buffer byte for byte (hyper's server reads the connection from there): a request it takes
//! is a prefix of the input, the rest (the body, then the next request) is left as it was, a
//! body is never longer than the limit, and feeding the same bytes in pieces ends in the same
//! request.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tandem_edge::h1::{self, ParsedRequest};

/// What a parse made of the input: the request (method, target, fields, close, body length)
/// and the bytes left.
type Outcome = Option<(String, String, Vec<(String, Vec<u8>)>, bool, u64, Vec<u8>)>;

fn outcome(r: ParsedRequest, buf: &BytesMut) -> Outcome {
    match r {
        ParsedRequest::Simple { parts, close, body } => Some((
            parts.method.to_string(),
            parts.uri.to_string(),
            parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            close,
            body,
            buf.to_vec(),
        )),
        ParsedRequest::Partial | ParsedRequest::Other => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let [split, limits, rest @ ..] = data else {
        return;
    };
    let split = usize::from(*split % 64) + 1;
    // A small head limit now and then, so that the limit paths run too.
    let max_head = if limits % 4 == 0 { usize::from(*limits) + 16 } else { 16 * 1024 };
    let max_headers = usize::from(limits % 101);
    let max_body = u64::from(*limits) * 8;

    // Whole.
    let mut buf = BytesMut::from(rest);
    let whole = h1::parse_request(&mut buf, max_head, max_headers, max_body);
    if let ParsedRequest::Simple { body, .. } = &whole {
        assert!(*body <= max_body, "a body over the limit was taken");
        assert!(rest.ends_with(&buf), "the bytes after the head are left as they were");
        assert!(buf.len() < rest.len(), "a request takes at least its request line");
    } else {
        assert_eq!(&buf[..], rest, "an untaken head stays in the buffer as it was");
    }
    let whole = outcome(whole, &buf);

    // In pieces, as a connection reads them: `Partial` until the head is complete.
    let mut buf = BytesMut::new();
    let mut pieces = rest.chunks(split);
    let pieced = loop {
        let before = buf.clone();
        match h1::parse_request(&mut buf, max_head, max_headers, max_body) {
            ParsedRequest::Partial => {
                assert_eq!(buf, before);
                match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => break None,
                }
            }
            r @ ParsedRequest::Simple { .. } => {
                for p in pieces.by_ref() {
                    buf.extend_from_slice(p);
                }
                break outcome(r, &buf);
            }
            ParsedRequest::Other => {
                assert_eq!(buf, before);
                break None;
            }
        }
    };
    // A head taken from the whole input is taken the same way from pieces (a piece may end
    // a head early only where the whole input had no complete head either).
    if let Some(w) = &whole {
        assert_eq!(Some(w), pieced.as_ref(), "{:?}", String::from_utf8_lossy(rest));
    }
});
