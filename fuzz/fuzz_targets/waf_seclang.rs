//! The SecLang parser and loader on arbitrary text: errors, never panics or hangs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = tandem_waf::seclang::split_directives(text);
    let _ = tandem_waf::seclang::parse_variables(text);
    let _ = tandem_waf::seclang::parse_actions(text);
    let _ = tandem_waf::seclang::parse_operator(text);
    let mut l = tandem_waf::Loader::new();
    if l.add_text(text, "fuzz.conf", std::path::Path::new("/nonexistent")).is_ok() {
        let _ = l.finish();
    }
});
