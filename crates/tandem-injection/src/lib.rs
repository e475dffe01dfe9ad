//! SQL-injection and XSS detection in the manner of libinjection (tokenizer, folding and
//! fingerprint lookup for SQLi; an HTML5 tokenizer with a blacklist for XSS), in safe Rust.
//!
//! This crate owns only the detection algorithms over bytes; the WAF (`tandem-waf`) calls
//! [`detect_sqli`] and [`detect_xss`] for the `@detectSQLi` and `@detectXSS` operators.
//!
//! Work in progress: the API is fixed, the port lands in its own branch.

/// A libinjection SQLi fingerprint: up to five token-type characters, e.g. `s&1c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    bytes: [u8; 8],
    len: u8,
}

impl Fingerprint {
    /// The fingerprint as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

/// Whether `input` looks like SQL injection; `Some(fingerprint)` when it does.
pub fn detect_sqli(_input: &[u8]) -> Option<Fingerprint> {
    None
}

/// Whether `input` looks like cross-site scripting.
pub fn detect_xss(_input: &[u8]) -> bool {
    false
}
