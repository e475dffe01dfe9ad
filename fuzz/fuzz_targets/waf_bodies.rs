//! The request body processors on arbitrary bytes: the first byte picks the processor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_waf::body;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            let _ = body::parse_urlencoded(rest, b'&', 1000);
        }
        1 => {
            let _ = body::parse_multipart(rest, b"BOUNDARY", 100, 1000);
            let mut flags = body::MultipartFlags::default();
            let _ = body::multipart_boundary(rest, &mut flags);
        }
        2 => {
            let _ = body::parse_json(rest, 64, 1000);
        }
        3 => {
            let _ = body::parse_xml(rest, 64);
        }
        _ => {
            let mut out = Vec::new();
            body::parse_cookies(rest, &mut out);
        }
    }
});
