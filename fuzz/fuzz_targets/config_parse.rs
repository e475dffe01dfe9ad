//! Config parsing and validation must turn any text into a config or a list of problems,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = tandem_config::parse(text, "fuzz.toml") {
            let _ = e.to_string();
        }
    }
});
