//! Operators (`@rx`, `@pm`, `@within`, ...): compiled once at load, executed per value.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use ipnet::IpNet;

use crate::pattern::{LimitExceeded, Pattern};
use crate::seclang::RawOperator;
use crate::template::Template;

/// A compiled operator.
#[derive(Debug, Clone)]
pub struct Operator {
    /// `!`: the rule matches when the operator does not.
    pub negated: bool,
    /// What it does.
    pub kind: OpKind,
    /// The name as written, for logs.
    pub name: &'static str,
    /// The argument as written, for logs.
    pub arg: String,
    /// The argument's bytes when it has no macros (so nothing is expanded per use).
    pub literal: Option<Vec<u8>>,
}

/// The operator and its compiled argument.
#[derive(Debug, Clone)]
pub enum OpKind {
    /// Regular expression.
    Rx(Arc<Pattern>),
    /// Regular expression whose pattern contains macros (compiled per use).
    RxMacro(Template),
    /// Any of a set of phrases, case-insensitively.
    Pm(Arc<PhraseSet>),
    /// The input is a substring of the argument.
    Within(Template),
    /// The argument is a substring of the input.
    Contains(Template),
    /// The argument occurs in the input as a whole word.
    ContainsWord(Template),
    /// Prefix.
    BeginsWith(Template),
    /// Suffix.
    EndsWith(Template),
    /// Equality.
    Streq(Template),
    /// Substring (literal, fast).
    StrMatch(Arc<memchr::memmem::Finder<'static>>),
    /// Integer comparison.
    Num(NumOp, Template),
    /// Client address in a list of networks.
    IpMatch(Arc<Vec<IpNet>>),
    /// A byte outside the allowed set.
    ValidateByteRange(Box<[bool; 256]>),
    /// Invalid `%` encoding.
    ValidateUrlEncoding,
    /// Invalid UTF-8.
    ValidateUtf8Encoding,
    /// libinjection SQLi.
    DetectSqli,
    /// libinjection XSS.
    DetectXss,
    /// Always.
    Unconditional,
    /// Never.
    NoMatch,
}

/// Integer comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumOp {
    /// `@eq`
    Eq,
    /// `@ge`
    Ge,
    /// `@gt`
    Gt,
    /// `@le`
    Le,
    /// `@lt`
    Lt,
}

/// A compiled phrase list for `@pm`.
#[derive(Debug)]
pub struct PhraseSet {
    ac: AhoCorasick,
    phrases: Vec<Vec<u8>>,
}

impl PhraseSet {
    /// Compile phrases (matched case-insensitively).
    pub fn new(phrases: Vec<Vec<u8>>) -> Result<PhraseSet, String> {
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(&phrases)
            .map_err(|e| format!("cannot build phrase matcher: {e}"))?;
        Ok(PhraseSet { ac, phrases })
    }

    /// The first phrase found in `hay`.
    pub fn find(&self, hay: &[u8]) -> Option<&[u8]> {
        self.ac
            .find(hay)
            .map(|m| self.phrases[m.pattern().as_usize()].as_slice())
    }

    /// The phrases.
    pub fn phrases(&self) -> &[Vec<u8>] {
        &self.phrases
    }

    /// Number of phrases.
    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    /// Whether it has no phrases.
    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }
}

/// Capture groups 0..=9 of a match. The buffers are kept when the groups are cleared, so a
/// transaction that captures on every request (CRS rule 920450 captures each header name)
/// copies bytes into existing allocations.
#[derive(Debug, Default)]
pub struct Captures {
    bufs: Vec<Vec<u8>>,
    /// Bit `i`: group `i` took part in the match.
    present: u16,
    len: usize,
}

impl Captures {
    /// The most groups kept (`TX:0` to `TX:9`).
    pub const MAX: usize = 10;

    /// No groups.
    pub fn clear(&mut self) {
        self.len = 0;
        self.present = 0;
    }

    /// Append the next group (`None`: it did not take part). Groups past [`Captures::MAX`]
    /// are ignored.
    pub fn push(&mut self, group: Option<&[u8]>) {
        if self.len >= Self::MAX {
            return;
        }
        if self.len == self.bufs.len() {
            self.bufs.push(Vec::new());
        }
        let b = &mut self.bufs[self.len];
        b.clear();
        if let Some(g) = group {
            b.extend_from_slice(g);
            self.present |= 1 << self.len;
        }
        self.len += 1;
    }

    /// Group `i`, if the match had it.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        (i < self.len && self.present & (1 << i) != 0).then(|| self.bufs[i].as_slice())
    }

    /// How many groups the match had (up to [`Captures::MAX`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What an operator reports besides match / no match.
#[derive(Debug, Default)]
pub struct OpOutput {
    /// Capture groups (0..=9) for `capture`.
    pub captures: Captures,
    /// The regex gave up (backtrack limit).
    pub limit_exceeded: bool,
}

impl Operator {
    /// Compile an operator; `dir` resolves `@pmFromFile` and `@ipMatchFromFile` paths.
    pub fn compile(raw: &RawOperator, dir: &Path) -> Result<Operator, String> {
        let arg = raw.arg.clone();
        let (name, kind): (&'static str, OpKind) = match raw.name.as_str() {
            "rx" => {
                if arg.contains("%{") {
                    ("rx", OpKind::RxMacro(Template::parse(&arg)))
                } else {
                    ("rx", OpKind::Rx(Arc::new(Pattern::new(&arg)?)))
                }
            }
            "pm" => {
                let phrases: Vec<Vec<u8>> = arg
                    .split_ascii_whitespace()
                    .map(|s| s.as_bytes().to_vec())
                    .collect();
                ("pm", OpKind::Pm(Arc::new(PhraseSet::new(phrases)?)))
            }
            "pmf" | "pmfromfile" => {
                let mut phrases = Vec::new();
                for f in arg.split_ascii_whitespace() {
                    let path = dir.join(f);
                    let text = std::fs::read(&path).map_err(|e| {
                        format!(
                            "@pmFromFile: cannot read {} ({e}); data files are resolved relative to the rules file",
                            path.display()
                        )
                    })?;
                    for line in text.split(|&c| c == b'\n') {
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        let t = line.trim_ascii();
                        if t.is_empty() || t.starts_with(b"#") {
                            continue;
                        }
                        phrases.push(t.to_vec());
                    }
                }
                ("pmFromFile", OpKind::Pm(Arc::new(PhraseSet::new(phrases)?)))
            }
            "within" => ("within", OpKind::Within(Template::parse(&arg))),
            "contains" => ("contains", OpKind::Contains(Template::parse(&arg))),
            "containsword" => ("containsWord", OpKind::ContainsWord(Template::parse(&arg))),
            "beginswith" => ("beginsWith", OpKind::BeginsWith(Template::parse(&arg))),
            "endswith" => ("endsWith", OpKind::EndsWith(Template::parse(&arg))),
            "streq" => ("streq", OpKind::Streq(Template::parse(&arg))),
            "strmatch" => (
                "strmatch",
                OpKind::StrMatch(Arc::new(
                    memchr::memmem::Finder::new(arg.as_bytes()).into_owned(),
                )),
            ),
            "eq" => ("eq", OpKind::Num(NumOp::Eq, Template::parse(&arg))),
            "ge" => ("ge", OpKind::Num(NumOp::Ge, Template::parse(&arg))),
            "gt" => ("gt", OpKind::Num(NumOp::Gt, Template::parse(&arg))),
            "le" => ("le", OpKind::Num(NumOp::Le, Template::parse(&arg))),
            "lt" => ("lt", OpKind::Num(NumOp::Lt, Template::parse(&arg))),
            "ipmatch" => ("ipMatch", OpKind::IpMatch(Arc::new(parse_nets(&arg)?))),
            "ipmatchfromfile" | "ipmatchf" => {
                let path = dir.join(arg.trim());
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!("@ipMatchFromFile: cannot read {} ({e})", path.display())
                })?;
                let list: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .collect();
                (
                    "ipMatchFromFile",
                    OpKind::IpMatch(Arc::new(parse_nets(&list.join(","))?)),
                )
            }
            "validatebyterange" => (
                "validateByteRange",
                OpKind::ValidateByteRange(Box::new(parse_byte_ranges(&arg)?)),
            ),
            "validateurlencoding" => ("validateUrlEncoding", OpKind::ValidateUrlEncoding),
            "validateutf8encoding" => ("validateUtf8Encoding", OpKind::ValidateUtf8Encoding),
            "detectsqli" => ("detectSQLi", OpKind::DetectSqli),
            "detectxss" => ("detectXSS", OpKind::DetectXss),
            "unconditionalmatch" => ("unconditionalMatch", OpKind::Unconditional),
            "nomatch" => ("noMatch", OpKind::NoMatch),
            other => {
                return Err(format!(
                    "unsupported operator @{other}; see docs/waf.md for the supported operators"
                ));
            }
        };
        let mut op = Operator {
            negated: raw.negated,
            kind,
            name,
            arg,
            literal: None,
        };
        op.literal = op
            .template()
            .and_then(Template::as_literal)
            .map(String::into_bytes);
        Ok(op)
    }

    /// Whether the result depends on the input bytes alone and costs enough to remember
    /// across transactions (regexes, phrase sets, libinjection, the validators): see the
    /// transaction's operator memo. Templated arguments, `@ipMatch` (which may read the
    /// client address) and the cheap comparisons are not.
    pub fn memoisable(&self) -> bool {
        matches!(
            self.kind,
            OpKind::Rx(_)
                | OpKind::Pm(_)
                | OpKind::DetectSqli
                | OpKind::DetectXss
                | OpKind::ValidateByteRange(_)
                | OpKind::ValidateUrlEncoding
                | OpKind::ValidateUtf8Encoding
        )
    }

    /// The template to expand before [`Operator::exec`], if the argument has macros.
    pub fn template(&self) -> Option<&Template> {
        match &self.kind {
            OpKind::RxMacro(t)
            | OpKind::Within(t)
            | OpKind::Contains(t)
            | OpKind::ContainsWord(t)
            | OpKind::BeginsWith(t)
            | OpKind::EndsWith(t)
            | OpKind::Streq(t)
            | OpKind::Num(_, t) => Some(t),
            _ => None,
        }
    }

    /// Run on one value. `arg` is the expanded argument for templated operators; `capture`
    /// asks for groups. Returns whether the operator matched (before negation).
    pub fn exec(
        &self,
        input: &[u8],
        arg: &[u8],
        capture: bool,
        remote: Option<IpAddr>,
        out: &mut OpOutput,
    ) -> bool {
        match &self.kind {
            OpKind::Rx(p) => run_rx(p, input, capture, out),
            OpKind::RxMacro(_) => match Pattern::new(&String::from_utf8_lossy(arg)) {
                Ok(p) => run_rx(&p, input, capture, out),
                Err(_) => false,
            },
            OpKind::Pm(set) => match set.find(input) {
                Some(p) => {
                    if capture {
                        out.captures.clear();
                        out.captures.push(Some(p));
                    }
                    true
                }
                None => false,
            },
            OpKind::Within(_) => !input.is_empty() && memchr::memmem::find(arg, input).is_some(),
            OpKind::Contains(_) => memchr::memmem::find(input, arg).is_some(),
            OpKind::ContainsWord(_) => contains_word(input, arg),
            OpKind::BeginsWith(_) => input.starts_with(arg),
            OpKind::EndsWith(_) => input.ends_with(arg),
            OpKind::Streq(_) => input == arg,
            OpKind::StrMatch(f) => f.find(input).is_some(),
            OpKind::Num(op, _) => {
                let a = atoi(input);
                let b = atoi(arg);
                match op {
                    NumOp::Eq => a == b,
                    NumOp::Ge => a >= b,
                    NumOp::Gt => a > b,
                    NumOp::Le => a <= b,
                    NumOp::Lt => a < b,
                }
            }
            OpKind::IpMatch(nets) => {
                let ip = std::str::from_utf8(input)
                    .ok()
                    .and_then(|s| s.trim().parse::<IpAddr>().ok())
                    .or(remote);
                ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
            }
            OpKind::ValidateByteRange(allowed) => input.iter().any(|&b| !allowed[b as usize]),
            OpKind::ValidateUrlEncoding => !valid_url_encoding(input),
            OpKind::ValidateUtf8Encoding => std::str::from_utf8(input).is_err(),
            OpKind::DetectSqli => match tandem_injection::detect_sqli(input) {
                Some(fp) => {
                    if capture {
                        out.captures.clear();
                        out.captures.push(Some(fp.as_str().as_bytes()));
                    }
                    true
                }
                None => false,
            },
            OpKind::DetectXss => tandem_injection::detect_xss(input),
            OpKind::Unconditional => true,
            OpKind::NoMatch => false,
        }
    }
}

fn run_rx(p: &Pattern, input: &[u8], capture: bool, out: &mut OpOutput) -> bool {
    let r: Result<bool, LimitExceeded> = if capture {
        p.captures(input, &mut out.captures)
    } else {
        p.is_match(input)
    };
    match r {
        Ok(m) => m,
        Err(LimitExceeded) => {
            out.limit_exceeded = true;
            false
        }
    }
}

/// C `atoi`: optional whitespace and sign, then digits; anything else ends the number.
pub fn atoi(s: &[u8]) -> i64 {
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'-' || s[i] == b'+') {
        neg = s[i] == b'-';
        i += 1;
    }
    let mut v: i64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add(i64::from(s[i] - b'0'));
        i += 1;
    }
    if neg { -v } else { v }
}

fn contains_word(input: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut start = 0;
    while let Some(p) = memchr::memmem::find(&input[start..], word) {
        let s = start + p;
        let e = s + word.len();
        let left_ok = s == 0 || !is_word(input[s - 1]);
        let right_ok = e == input.len() || !is_word(input[e]);
        if left_ok && right_ok {
            return true;
        }
        start = s + 1;
    }
    false
}

fn valid_url_encoding(input: &[u8]) -> bool {
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            if i + 2 >= input.len() {
                return false;
            }
            if !(input[i + 1].is_ascii_hexdigit() && input[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn parse_nets(arg: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for part in arg
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let net = if part.contains('/') {
            part.parse::<IpNet>()
                .map_err(|e| format!("@ipMatch: {part:?} is not a network ({e})"))?
        } else {
            let ip: IpAddr = part
                .parse()
                .map_err(|e| format!("@ipMatch: {part:?} is not an address ({e})"))?;
            IpNet::from(ip)
        };
        out.push(net.trunc());
    }
    Ok(out)
}

fn parse_byte_ranges(arg: &str) -> Result<[bool; 256], String> {
    let mut allowed = [false; 256];
    for part in arg
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<u8>().map_err(|_| {
                format!("@validateByteRange: {part:?} is not a byte or range like 32-126")
            })
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            return Err(format!("@validateByteRange: range {part:?} is reversed"));
        }
        for b in lo..=hi {
            allowed[b as usize] = true;
        }
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seclang::parse_operator;

    fn op(s: &str) -> Operator {
        Operator::compile(&parse_operator(s), Path::new(".")).expect("compiles")
    }

    fn run(o: &Operator, input: &[u8], arg: &[u8]) -> bool {
        o.exec(input, arg, true, None, &mut OpOutput::default())
    }

    #[test]
    fn basics() {
        assert!(run(&op("@pm Foo bar"), b"xxFOOyy", b""));
        assert!(run(&op("@within GET POST"), b"GET", b"GET POST"));
        assert!(!run(&op("@within GET POST"), b"", b"GET POST"));
        assert!(run(&op("@lt 5"), b"3", b"5"));
        assert!(run(&op("@eq 0"), b"abc", b"0"));
        assert!(run(&op("@validateByteRange 32-126"), b"a\x01", b""));
        assert!(!run(&op("@validateByteRange 1-255"), b"abc", b""));
        assert!(run(&op("@validateUrlEncoding"), b"a%zz", b""));
        assert!(run(&op("@validateUrlEncoding"), b"a%4", b""));
        assert!(!run(&op("@validateUrlEncoding"), b"a%41", b""));
        assert!(run(&op("@validateUtf8Encoding"), b"\xc0\xaf", b""));
        assert!(run(
            &op("@ipMatch 10.0.0.0/8,192.168.1.1"),
            b"10.2.3.4",
            b""
        ));
        assert!(!run(&op("@ipMatch 10.0.0.0/8"), b"11.2.3.4", b""));
        assert!(run(&op("@containsWord sel"), b"a sel b", b"sel"));
        assert!(!run(&op("@containsWord sel"), b"select", b"sel"));
        assert_eq!(atoi(b" -12abc"), -12);
    }

    #[test]
    fn rx_captures() {
        let o = op("@rx (\\d+)-(\\d+)");
        let mut out = OpOutput::default();
        assert!(o.exec(b"bytes=10-5", b"", true, None, &mut out));
        assert_eq!(out.captures.get(2), Some(&b"5"[..]));
        assert_eq!(out.captures.len(), 3);
        // The buffers are kept: the next match's groups replace the earlier ones.
        let o = op("@rx (a)|(b)");
        assert!(o.exec(b"b", b"", true, None, &mut out));
        assert_eq!(out.captures.len(), 3);
        assert_eq!(out.captures.get(0), Some(&b"b"[..]));
        assert_eq!(out.captures.get(1), None);
        assert_eq!(out.captures.get(2), Some(&b"b"[..]));
        out.captures.clear();
        assert!(out.captures.is_empty() && out.captures.get(0).is_none());
    }
}
