//! Regular expressions with PCRE's meaning, on the fastest engine that can run each one.
//!
//! Rules are written for PCRE in byte mode (`\xff` is the byte 0xff, `.` is any byte) with
//! `DOTALL` and `MULTILINE`, as ModSecurity v3 and Coraza compile them. Most CRS patterns fit
//! the `regex` crate, whose matching is linear in the input; those are compiled there with
//! Unicode off so they work on bytes. The few that need backtracking features (look-around,
//! back-references, atomic groups, possessive quantifiers) go to `fancy-regex`, with its
//! backtrack limit so one request cannot pin a core; input to it is read as Latin-1 so that
//! every byte is one character and `\xHH` still means a byte.
//!
//! Before either compiler sees a pattern, [`translate`] rewrites the few PCRE spellings that
//! Rust's parser reads differently (a literal `[`, `&&` or `~~` inside a class, a `{` that
//! is not a repetition).

use crate::operator::Captures;
use std::borrow::Cow;

/// The most backtracking steps one match may take before it is abandoned.
pub const BACKTRACK_LIMIT: usize = 200_000;

/// A compiled pattern.
#[derive(Debug)]
pub struct Pattern {
    source: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// `^.*$`: with `DOTALL` and `MULTILINE` it matches every value, and its match is the
    /// whole value (CRS captures every header name this way in rule 920450).
    Whole,
    Fast(regex::bytes::Regex),
    Backtrack(Box<fancy_regex::Regex>),
}

/// A match could not be decided within the backtracking budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitExceeded;

impl Pattern {
    /// Compile a PCRE-style pattern.
    pub fn new(pattern: &str) -> Result<Pattern, String> {
        if pattern == "^.*$" {
            return Ok(Pattern {
                source: pattern.to_string(),
                kind: Kind::Whole,
            });
        }
        let translated = translate(pattern);
        let fast = regex::bytes::RegexBuilder::new(&translated)
            .unicode(false)
            .dot_matches_new_line(true)
            .multi_line(true)
            .size_limit(64 << 20)
            .dfa_size_limit(16 << 20)
            .build();
        match fast {
            Ok(re) => Ok(Pattern {
                source: pattern.to_string(),
                kind: Kind::Fast(re),
            }),
            Err(fast_err) => {
                let re = fancy_regex::RegexBuilder::new(&format!("(?sm){translated}"))
                    .backtrack_limit(BACKTRACK_LIMIT)
                    .delegate_size_limit(64 << 20)
                    .delegate_dfa_size_limit(16 << 20)
                    .build()
                    .map_err(|e| {
                        format!("invalid regular expression ({e}; linear engine: {fast_err})")
                    })?;
                Ok(Pattern {
                    source: pattern.to_string(),
                    kind: Kind::Backtrack(Box::new(re)),
                })
            }
        }
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether this pattern needed the backtracking engine.
    pub fn is_backtracking(&self) -> bool {
        matches!(self.kind, Kind::Backtrack(_))
    }

    /// Whether the pattern matches anywhere in `hay`.
    pub fn is_match(&self, hay: &[u8]) -> Result<bool, LimitExceeded> {
        match &self.kind {
            Kind::Whole => Ok(true),
            Kind::Fast(re) => Ok(re.is_match(hay)),
            Kind::Backtrack(re) => re.is_match(&*latin1(hay)).map_err(|_| LimitExceeded),
        }
    }

    /// Match and collect groups 0..=9 into `caps` (cleared first; missing groups are `None`).
    pub fn captures(&self, hay: &[u8], caps: &mut Captures) -> Result<bool, LimitExceeded> {
        caps.clear();
        match &self.kind {
            Kind::Whole => {
                caps.push(Some(hay));
                Ok(true)
            }
            Kind::Fast(re) => {
                // Most values do not match: decide with the DFA first, capture only on a hit.
                if !re.is_match(hay) {
                    return Ok(false);
                }
                let Some(c) = re.captures(hay) else {
                    return Ok(false);
                };
                for i in 0..c.len().min(Captures::MAX) {
                    caps.push(c.get(i).map(|m| m.as_bytes()));
                }
                Ok(true)
            }
            Kind::Backtrack(re) => {
                let text = latin1(hay);
                let Some(c) = re.captures(&*text).map_err(|_| LimitExceeded)? else {
                    return Ok(false);
                };
                for i in 0..c.len().min(Captures::MAX) {
                    caps.push(c.get(i).map(|m| from_latin1(m.as_str())).as_deref());
                }
                Ok(true)
            }
        }
    }
}

/// Bytes as Latin-1 text: one character per byte.
fn latin1(hay: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(hay) {
        Ok(s) if hay.is_ascii() => Cow::Borrowed(s),
        _ => Cow::Owned(hay.iter().map(|&b| char::from(b)).collect()),
    }
}

fn from_latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

/// Rewrite PCRE spellings that Rust's regex parser reads differently.
pub fn translate(p: &str) -> String {
    let b: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    let mut class_start = 0usize;
    while i < b.len() {
        let c = b[i];
        if c == '\\' {
            out.push(c);
            if let Some(&n) = b.get(i + 1) {
                out.push(n);
                // \x{...}, \p{...}: copy the braces verbatim.
                if n == 'x' && b.get(i + 2) == Some(&'{') {
                    // PCRE in byte mode: \x{hh} is the byte hh (Rust would read a code point).
                    let close = b[i + 3..].iter().position(|&c| c == '}');
                    if let Some(len) = close {
                        let hex: String = b[i + 3..i + 3 + len].iter().collect();
                        if let Ok(v) = u32::from_str_radix(&hex, 16)
                            && v <= 0xff
                        {
                            out.push_str(&format!("{v:02x}"));
                            i += 4 + len;
                            continue;
                        }
                    }
                }
                if matches!(n, 'x' | 'p' | 'P') && b.get(i + 2) == Some(&'{') {
                    let mut j = i + 2;
                    while j < b.len() {
                        out.push(b[j]);
                        j += 1;
                        if b[j - 1] == '}' {
                            break;
                        }
                    }
                    i = j;
                    continue;
                }
            }
            i += 2;
            continue;
        }
        if in_class {
            match c {
                ']' if i > class_start => {
                    in_class = false;
                    out.push(c);
                }
                '[' => {
                    if b.get(i + 1) == Some(&':') {
                        // A POSIX class [:name:] stays as it is.
                        let rest: String = b[i..].iter().collect();
                        if let Some(end) = rest.find(":]") {
                            out.push_str(&rest[..end + 2]);
                            i += rest[..end + 2].chars().count();
                            continue;
                        }
                    }
                    out.push_str("\\[");
                }
                '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                '-' if b.get(i + 1) == Some(&'-') => {
                    out.push_str("\\-");
                }
                _ => out.push(c),
            }
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push(c);
                i += 1;
                if b.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // A `]` right after `[` or `[^` is a literal.
                if b.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                class_start = i;
                continue;
            }
            '{' => {
                // A repetition is {n}, {n,} or {n,m}; anything else is a literal brace.
                let rest: String = b[i + 1..].iter().take(24).collect();
                let is_rep = rest.find('}').is_some_and(|end| {
                    let inner = &rest[..end];
                    let mut parts = inner.splitn(2, ',');
                    let first = parts.next().unwrap_or("");
                    !first.is_empty()
                        && first.bytes().all(|d| d.is_ascii_digit())
                        && parts
                            .next()
                            .is_none_or(|s| s.bytes().all(|d| d.is_ascii_digit()))
                });
                if is_rep {
                    out.push(c);
                } else {
                    out.push_str("\\{");
                }
            }
            '}' => {
                // Only a brace closing a repetition we kept is bare.
                if out.ends_with(|ch: char| ch.is_ascii_digit() || ch == ',')
                    && out.rfind('{').is_some_and(|k| !out[..k].ends_with('\\'))
                {
                    out.push('}');
                } else {
                    out.push_str("\\}");
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_flags() {
        let p = Pattern::new(r"^a.b$").expect("compiles");
        assert!(!p.is_backtracking());
        assert!(p.is_match(b"x\na\nb").expect("decided"));
        let p = Pattern::new(r"[\x80-\xff]").expect("compiles");
        assert!(p.is_match(b"a\xe9").expect("decided"));
        assert!(!p.is_match(b"abc").expect("decided"));
    }

    #[test]
    fn whole_value_pattern_agrees_with_the_regex_engine() {
        let whole = Pattern::new("^.*$").expect("compiles");
        let general = Pattern::new("^.*$.?").expect("compiles");
        for hay in [&b""[..], b"host", b"a\nb", b"x\n", b"\n", b"\xff\x00z"] {
            let (mut a, mut b) = (Captures::default(), Captures::default());
            assert!(whole.captures(hay, &mut a).expect("decided"));
            assert!(general.captures(hay, &mut b).expect("decided"));
            assert_eq!((a.len(), a.get(0)), (b.len(), b.get(0)), "{hay:?}");
            assert_eq!((a.len(), a.get(0)), (1, Some(hay)));
        }
    }

    #[test]
    fn lookaround_falls_back() {
        let p = Pattern::new(r"a(?!b)\xe9").expect("compiles");
        assert!(p.is_backtracking());
        assert!(p.is_match(b"xa\xe9").expect("decided"));
        assert!(!p.is_match(b"ab").expect("decided"));
        let mut caps = Captures::default();
        let p = Pattern::new(r"(a)(?=\xe9)").expect("compiles");
        assert!(p.captures(b"za\xe9", &mut caps).expect("decided"));
        assert_eq!(caps.get(1), Some(&b"a"[..]));
    }

    #[test]
    fn pcre_spellings() {
        assert_eq!(translate(r"[[a]"), r"[\[a]");
        assert_eq!(translate(r"[]a]"), r"[\]a]");
        assert_eq!(translate(r"[a&&b]"), r"[a\&\&b]");
        assert_eq!(translate(r"a{2,3}b{c}"), r"a{2,3}b\{c\}");
        assert_eq!(translate(r"[[:alpha:]]"), r"[[:alpha:]]");
        assert_eq!(translate(r"\x{e2}\x{100}"), r"\xe2\x{100}");
        let p = Pattern::new(r"\x{e2}\x80").expect("compiles");
        assert!(p.is_match(b"\xe2\x80").expect("decided"));
        for p in [r"[[a]", r"a{b", r"x}", r"[a&&b]", r"[\--9]"] {
            Pattern::new(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    }

    #[test]
    fn catastrophic_pattern_is_bounded() {
        let p = Pattern::new(r"^(a+)+\1$").expect("compiles");
        let hay = vec![b'a'; 64];
        let mut hay2 = hay.clone();
        hay2.push(b'b');
        // Either decided or given up; never a hang.
        let _ = p.is_match(&hay2);
    }
}
