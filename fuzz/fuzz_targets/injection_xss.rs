//! libinjection-equivalent XSS detection must accept any bytes: no panic, no hang, and the
//! answer depends on the input only.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first = tandem_injection::detect_xss(data);
    assert_eq!(first, tandem_injection::detect_xss(data));
});
