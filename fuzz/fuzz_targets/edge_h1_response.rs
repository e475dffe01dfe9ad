//! The edge's HTTP/1.1 response reader (crates/tandem-edge/src/h1.rs) on arbitrary origin
//! bytes: the head parser, then the chunked decoder over what follows, fed in pieces of the
//! size the first byte picks. Neither may panic, loop, or hand out more bytes than it got.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tandem_edge::h1::{self, Parsed, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split % 64) + 1;
    let mut buf = BytesMut::new();
    let mut input = rest.chunks(split);
    // The head (and interim responses).
    loop {
        match h1::parse_response(&mut buf, split % 2 == 0) {
            Ok(Parsed::Head(_)) => break,
            Ok(Parsed::Interim) => continue,
            Ok(Parsed::Partial) => match input.next() {
                Some(c) => buf.extend_from_slice(c),
                None => return,
            },
            Err(_) => return,
        }
    }
    // Whatever follows, as a chunked body.
    let mut decoder = h1::Chunked::default();
    let mut out = 0usize;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Step::Data(d)) => {
                assert!(!d.is_empty());
                out += d.len();
                assert!(out <= rest.len());
            }
            Ok(Step::Trailers(_)) => {}
            Ok(Step::End) | Err(_) => return,
            Ok(Step::NeedMore) => match input.next() {
                Some(c) => buf.extend_from_slice(c),
                None => return,
            },
        }
    }
});
