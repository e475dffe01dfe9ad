//! SQL-injection and XSS detection equivalent to libinjection, in safe Rust.
//!
//! This crate owns the two detection algorithms over bytes that the WAF (`tandem-waf`)
//! calls for the `@detectSQLi` and `@detectXSS` operators of the OWASP Core Rule Set. It
//! does not decode requests or apply transformations (`t:urlDecodeUni` and friends): the
//! caller passes the already transformed value, exactly as ModSecurity hands it to
//! libinjection.
//!
//! # What "equivalent" means
//!
//! The port follows libinjection 3.9.2 (the version ModSecurity and Coraza have long
//! shipped) byte for byte, including its data and its quirks:
//!
//! - **SQLi** ([`detect_sqli`]): libinjection's tokenizer (a 256-entry character-class
//!   dispatch table), token folding down to at most five tokens, a fingerprint of their
//!   types (`s&sos` for `1' OR '1'='1`), lookup in libinjection's 8367 fingerprints, and the
//!   false-positive reducer (`libinjection_sqli_not_whitelist`). The input is tried as-is,
//!   as if it followed a single quote, and as if it followed a double quote, with ANSI or
//!   MySQL comment rules, in libinjection's order. The keyword and fingerprint tables are
//!   generated from libinjection's `sqlparse_data.json` by `gen/gen_sqli_data.py`.
//! - **XSS** ([`detect_xss`]): libinjection's HTML5 tokenizer started in five states (text;
//!   inside an unquoted, single-, double- or back-quoted attribute value) and its checks:
//!   doctypes, black-listed tags (`script`, `iframe`, `svg*`, ...), event handlers (`on*`),
//!   `style`, URL attributes whose entity-decoded value starts with `javascript:`,
//!   `vbscript:`, `data:` or `view-source:`, and IE's conditional comments.
//!
//! Equivalence is checked by differential tests against the C library (a committed corpus
//! of ~20k inputs with the C library's answers in `tests/`; `gen/difftest.sh` runs
//! millions more), and by fuzzing (`fuzz/`).
//!
//! # Differences from libinjection 4.0
//!
//! libinjection's current development line (4.0) changed behaviour in ways this port does
//! not follow yet, because no reference build of 4.0 was available to test against:
//! `1.e`-style numbers are skipped rather than made words (a WAF bypass fix), `[` is a
//! bracket word only under MySQL rules, the `$tag$` string search offset is fixed, XSS
//! checks `on*` attributes against a much longer list of event names (and only names of
//! five or more bytes), and the published `fingerprints.txt` drops `1c`, `nc`, `sc` and
//! `vc`. Each is a small, local change once a 4.0 reference is at hand.
//!
//! # Cost
//!
//! Both functions are pure, allocate nothing and use a few hundred bytes of stack; their
//! work is linear in the input length. They run on every argument of every request at
//! paranoia level 1, so this matters: see `benches/detect.rs`.

#![forbid(unsafe_code)]

mod sqli;
#[cfg(test)]
mod testfiles;
mod xss;

/// A libinjection SQLi fingerprint: up to five token-type characters, e.g. `s&1c`.
///
/// Each character is a token type: `s` string, `1` number, `n` bare word, `k` keyword,
/// `U` union, `E` select-like expression, `f` function, `o` operator, `&` logic operator,
/// `c` comment, `v` variable, `(` `)` `,` `;` punctuation, `X` unparsable input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    bytes: [u8; 8],
    len: u8,
}

impl Fingerprint {
    fn new(types: &[u8]) -> Self {
        let mut bytes = [0u8; 8];
        let len = types.len().min(bytes.len());
        bytes[..len].copy_from_slice(&types[..len]);
        Fingerprint {
            bytes,
            len: len as u8,
        }
    }

    /// The fingerprint as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `input` looks like SQL injection; `Some(fingerprint)` when it does
/// (libinjection's `libinjection_sqli`).
pub fn detect_sqli(input: &[u8]) -> Option<Fingerprint> {
    sqli::detect(input)
}

/// Whether `input` looks like cross-site scripting (libinjection's `libinjection_xss`).
pub fn detect_xss(input: &[u8]) -> bool {
    xss::detect(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_sqli() {
        assert_eq!(
            detect_sqli(b"1' OR '1'='1")
                .map(|f| f.to_string())
                .as_deref(),
            Some("s&sos")
        );
        assert_eq!(detect_sqli(b"hello world"), None);
        assert_eq!(detect_sqli(b""), None);
    }

    #[test]
    fn basic_xss() {
        assert!(detect_xss(b"<script>alert(1)</script>"));
        assert!(!detect_xss(b"hello world"));
        assert!(!detect_xss(b""));
    }
}
