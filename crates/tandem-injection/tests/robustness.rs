//! No input makes the detectors panic, loop or take more than linear time, and results do
//! not depend on anything but the input.

use proptest::prelude::*;
use std::time::{Duration, Instant};

const FRAGMENTS: &[&[u8]] = &[
    b"'",
    b"\"",
    b"`",
    b" ",
    b"\0",
    b"\xa0",
    b"\xff",
    b"(",
    b")",
    b",",
    b";",
    b".",
    b"-",
    b"--",
    b"#",
    b"/*",
    b"*/",
    b"/*!",
    b"\\",
    b"@@",
    b"$",
    b"$$",
    b"$a$",
    b"{",
    b"}",
    b"[",
    b"]",
    b"::",
    b"<=>",
    b"||",
    b"1",
    b"0x",
    b"1.e",
    b"x'",
    b"q'[",
    b"N'",
    b"E'",
    b"U&'",
    b"select",
    b"union",
    b"or",
    b"and",
    b"not in",
    b"<",
    b">",
    b"</",
    b"<!--",
    b"-->",
    b"<!DOCTYPE",
    b"<![CDATA[",
    b"]]>",
    b"<?",
    b"<%",
    b"%>",
    b"script",
    b"svg",
    b"onerror",
    b"href",
    b"style",
    b"=",
    b"javascript:",
    b"&#",
    b"&#x",
    b";",
];

fn soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..64).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512)) {
        let a = (tandem_injection::detect_sqli(&input), tandem_injection::detect_xss(&input));
        let b = (tandem_injection::detect_sqli(&input), tandem_injection::detect_xss(&input));
        prop_assert_eq!(a, b);
    }

    #[test]
    fn token_soup_never_panics(input in soup()) {
        let _ = tandem_injection::detect_sqli(&input);
        let _ = tandem_injection::detect_xss(&input);
    }

    #[test]
    fn fingerprints_are_short_type_strings(input in soup()) {
        if let Some(fp) = tandem_injection::detect_sqli(&input) {
            let s = fp.as_str();
            prop_assert!((1..=5).contains(&s.len()));
            prop_assert!(s.bytes().all(|b| b"kUBEtfn1vso&cA(){}.,:;T?X\\".contains(&b)), "{}", s);
        }
    }
}

/// Long inputs built from each fragment repeated: a quadratic path would show here.
#[test]
fn long_inputs_are_linear() {
    let budget = Duration::from_secs(if cfg!(debug_assertions) { 20 } else { 2 });
    let start = Instant::now();
    for frag in FRAGMENTS {
        let input: Vec<u8> = frag.iter().copied().cycle().take(256 * 1024).collect();
        let _ = tandem_injection::detect_sqli(&input);
        let _ = tandem_injection::detect_xss(&input);
    }
    let big: Vec<u8> = FRAGMENTS
        .concat()
        .into_iter()
        .cycle()
        .take(1 << 20)
        .collect();
    let _ = tandem_injection::detect_sqli(&big);
    let _ = tandem_injection::detect_xss(&big);
    assert!(start.elapsed() < budget, "took {:?}", start.elapsed());
}
