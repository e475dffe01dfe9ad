//! The parsers and transformations on generated hostile input: they may refuse it, never
//! panic. (The same entry points as the `waf_*` fuzz targets in the repository's `fuzz/`, with a
//! fixed seed: `cargo +nightly fuzz run waf_seclang` and so on.)

use tandem_waf::body;
use tandem_waf::transform::Transform;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % max;
        (0..n)
            .map(|_| alphabet[(self.next() as usize) % alphabet.len()])
            .collect()
    }
}

const SECLANG: &[u8] = b"SecRule ARGS|!&:/'\"\\@rx pm id:1,phase:2,chain,t:none,msg:'%{tx.x}' \n#SecMarker SecAction{}()[]|";
const BODY: &[u8] = b"--XX\r\nContent-Disposition: form-data; name=\"a\"; filename=\"b\"\r\n=&%{}[]\"<>/:;,\\ \t0x41\x00\xff";

#[test]
fn seclang_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let text = String::from_utf8_lossy(&rng.bytes(SECLANG, 200)).into_owned();
        let _ = tandem_waf::seclang::split_directives(&text);
        let _ = tandem_waf::seclang::parse_variables(&text);
        let _ = tandem_waf::seclang::parse_actions(&text);
        let mut l = tandem_waf::Loader::new();
        if l.add_text(&text, "gen.conf", std::path::Path::new("/nonexistent"))
            .is_ok()
        {
            let _ = l.finish();
        }
    }
}

#[test]
fn body_processors_never_panic() {
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    for _ in 0..3000 {
        let b = rng.bytes(BODY, 300);
        let _ = body::parse_urlencoded(&b, b'&', 100);
        let _ = body::parse_multipart(&b, b"XX", 10, 100);
        let mut flags = body::MultipartFlags::default();
        let _ = body::multipart_boundary(&b, &mut flags);
        let _ = body::parse_json(&b, 16, 100);
        let _ = body::parse_xml(&b, 16);
        let mut c = Vec::new();
        body::parse_cookies(&b, &mut c);
    }
    // Deep nesting is refused, not recursed into.
    let deep = "[".repeat(100_000);
    assert!(body::parse_json(deep.as_bytes(), 512, 100).is_err());
    let deep = "<a>".repeat(10_000);
    assert!(body::parse_xml(deep.as_bytes(), 512).is_err());
}

#[test]
fn transformations_never_panic() {
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let names = [
        "lowercase",
        "urlDecode",
        "urlDecodeUni",
        "htmlEntityDecode",
        "jsDecode",
        "cssDecode",
        "cmdLine",
        "compressWhitespace",
        "removeWhitespace",
        "removeNulls",
        "replaceNulls",
        "removeComments",
        "removeCommentsChar",
        "replaceComments",
        "base64Decode",
        "base64DecodeExt",
        "hexDecode",
        "utf8toUnicode",
        "normalizePath",
        "normalizePathWin",
        "escapeSeqDecode",
        "sqlHexDecode",
        "trim",
        "trimLeft",
        "trimRight",
        "length",
    ];
    let alphabet: Vec<u8> =
        b"%uU+&#x;\\/*-<!>.0123456789abcdefABCDEF \t\n\"'^,(\xc3\xa9\xe2\x80\x99\x00\xff".to_vec();
    let mut out = Vec::new();
    for _ in 0..3000 {
        let input = rng.bytes(&alphabet, 64);
        for n in names {
            let t = Transform::parse(n).expect("known").expect("not none");
            let _ = t.apply(&input, &mut out);
        }
    }
}
