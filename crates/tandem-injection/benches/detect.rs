//! ns/call of the detectors on typical request arguments, benign and hostile.
//! `cargo bench -p tandem-injection --bench detect`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const BENIGN: &[(&str, &[u8])] = &[
    ("benign_short", b"42"),
    ("benign_word", b"john.smith"),
    ("benign_email", b"john.smith+news@example.com"),
    ("benign_sentence", b"I'd like to order 2 boxes, please -- deliver before Friday."),
    (
        "benign_json",
        b"{\"user\":\"alice\",\"items\":[1,2,3],\"note\":\"it's fine\",\"total\":12.50}",
    ),
    (
        "benign_1k",
        b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt \
ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris \
nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit \
esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in \
culpa qui officia deserunt mollit anim id est laborum. Lorem ipsum dolor sit amet, consectetur \
adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim \
veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute \
irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur \
sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum.",
    ),
];

const SQLI: &[(&str, &[u8])] = &[
    ("sqli_tautology", b"1' OR '1'='1"),
    (
        "sqli_union",
        b"-1 UNION ALL SELECT username, password FROM users--",
    ),
    ("sqli_time", b"foo')waitfor delay'5:0:20'--"),
];

const XSS: &[(&str, &[u8])] = &[
    ("xss_script", b"<script>alert(document.cookie)</script>"),
    ("xss_img", b"<img src=x onerror=alert(1)>"),
    ("xss_href", b"<a href=\"&#106;avascript:alert(1)\">x</a>"),
];

fn bench(c: &mut Criterion) {
    for (name, input) in BENIGN.iter().chain(SQLI).chain(XSS) {
        c.bench_function(&format!("sqli/{name}"), |b| {
            b.iter(|| tandem_injection::detect_sqli(black_box(input)))
        });
        c.bench_function(&format!("xss/{name}"), |b| {
            b.iter(|| tandem_injection::detect_xss(black_box(input)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
