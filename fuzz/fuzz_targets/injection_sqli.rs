//! libinjection-equivalent SQLi detection must accept any bytes: no panic, no hang, and a
//! fingerprint is one to five token-type characters.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(fp) = tandem_injection::detect_sqli(data) {
        let s = fp.as_str();
        assert!((1..=5).contains(&s.len()), "fingerprint {s:?}");
    }
});
