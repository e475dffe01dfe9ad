//! Literal prefilters: the cheapest way to not evaluate a rule.
//!
//! Most CRS rules can only match a value that contains one of a few literal strings: a regex
//! for SQL injection needs `select`, `union`, `'`, ...; a phrase list needs one of its
//! phrases. [`required`] works out such a set for an operator at load time (from the regex's
//! syntax tree with `regex-syntax`, or the phrases themselves). A transaction scans each
//! transformed value once for every literal of every rule (one Aho-Corasick pass for the
//! multi-byte literals, a byte-presence set for single bytes) and skips any rule whose
//! literals none of its values contains. That decision is exact in one direction only: a
//! rule that passes the prefilter still runs its operator, a rule that fails it could never
//! have matched.
//!
//! The sets are conservative: literals are compared ASCII-case-insensitively, long literals
//! are cut to their first [`MAX_LEN`] bytes, and anything the analysis does not understand
//! (look-around, back-references, large classes, repetitions that may be empty) means "no
//! prefilter": the rule always runs.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

use crate::operator::{OpKind, Operator};

/// Literals longer than this are cut (a prefix of a contained string is contained too).
pub const MAX_LEN: usize = 8;
/// The most strings an exact set may hold before it is reduced.
const MAX_EXACT: usize = 64;
/// The most literals a rule's set may hold.
const MAX_SET: usize = 4096;
/// Classes with more distinct (case-folded) bytes than this are not enumerated.
const MAX_CLASS: usize = 12;

/// What the analysis knows about the strings a (sub-)pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Info {
    /// Every match is exactly one of these strings (case-folded; may include "").
    Exact(Vec<Vec<u8>>),
    /// Every match contains one of these non-empty strings (case-folded).
    Contains(Vec<Vec<u8>>),
    /// Nothing useful.
    Any,
}

fn fold(b: &[u8]) -> Vec<u8> {
    b.iter().map(u8::to_ascii_lowercase).collect()
}

fn dedup(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v.dedup();
    v
}

/// Cut literals to [`MAX_LEN`] and drop those that contain another one of the set (a value
/// containing the longer one contains the shorter one too).
fn minimize(set: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = dedup(
        set.into_iter()
            .map(|mut s| {
                s.truncate(MAX_LEN);
                s
            })
            .collect(),
    );
    v.sort_by_key(Vec::len);
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(v.len());
    for s in v {
        if !out.iter().any(|o| memchr::memmem::find(&s, o).is_some()) {
            out.push(s);
        }
    }
    out
}

fn class_bytes(c: &Class) -> Option<Vec<Vec<u8>>> {
    let mut bytes: Vec<u8> = Vec::new();
    match c {
        Class::Bytes(b) => {
            for r in b.ranges() {
                if usize::from(r.end() - r.start()) >= 64 {
                    return None;
                }
                for x in r.start()..=r.end() {
                    bytes.push(x.to_ascii_lowercase());
                    if bytes.len() > 4 * MAX_CLASS {
                        return None;
                    }
                }
            }
        }
        Class::Unicode(u) => {
            for r in u.ranges() {
                let (s, e) = (u32::from(r.start()), u32::from(r.end()));
                if e >= 128 || e - s >= 64 {
                    return None;
                }
                for x in s..=e {
                    bytes.push((x as u8).to_ascii_lowercase());
                    if bytes.len() > 4 * MAX_CLASS {
                        return None;
                    }
                }
            }
        }
    }
    bytes.sort_unstable();
    bytes.dedup();
    if bytes.is_empty() || bytes.len() > MAX_CLASS {
        return None;
    }
    Some(bytes.into_iter().map(|b| vec![b]).collect())
}

fn cross(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len().saturating_mul(b.len()) > MAX_EXACT {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            if s.len() > 4 * MAX_LEN {
                return None;
            }
            out.push(s);
        }
    }
    Some(dedup(out))
}

/// A "contains" candidate from an exact set, if it requires something.
fn as_contains(set: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    (!set.is_empty() && set.iter().all(|s| !s.is_empty())).then(|| minimize(set.to_vec()))
}

/// Higher is better: longer shortest literal first, then fewer literals.
fn score(set: &[Vec<u8>]) -> (usize, std::cmp::Reverse<usize>) {
    let min = set.iter().map(Vec::len).min().unwrap_or(0).min(4);
    (min, std::cmp::Reverse(set.len()))
}

fn analyze(h: &Hir) -> Info {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Info::Exact(vec![Vec::new()]),
        HirKind::Literal(l) => Info::Exact(vec![fold(&l.0)]),
        HirKind::Class(c) => class_bytes(c).map_or(Info::Any, Info::Exact),
        HirKind::Capture(c) => analyze(&c.sub),
        HirKind::Repetition(r) => {
            let sub = analyze(&r.sub);
            if r.min == 0 {
                return match (r.max, sub) {
                    (Some(1), Info::Exact(mut s)) => {
                        s.push(Vec::new());
                        Info::Exact(dedup(s))
                    }
                    _ => Info::Any,
                };
            }
            match sub {
                Info::Exact(s) => {
                    // Every match starts with `min` matches of the sub-pattern: exact when
                    // that is all it can be, else a prefix that every match contains
                    // (`\.{2,3}` contains `..`, not only `.`).
                    let mut acc = vec![Vec::new()];
                    for _ in 0..r.min.min(3) {
                        match cross(&acc, &s) {
                            Some(x) => acc = x,
                            None => return as_contains(&s).map_or(Info::Any, Info::Contains),
                        }
                    }
                    if r.max == Some(r.min) && r.min <= 3 {
                        Info::Exact(acc)
                    } else {
                        as_contains(&acc)
                            .or_else(|| as_contains(&s))
                            .map_or(Info::Any, Info::Contains)
                    }
                }
                other => other,
            }
        }
        HirKind::Concat(children) => {
            let mut candidates: Vec<Vec<Vec<u8>>> = Vec::new();
            let mut run: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
            let mut all_exact = true;
            let close = |run: &mut Option<Vec<Vec<u8>>>, cands: &mut Vec<Vec<Vec<u8>>>| {
                if let Some(r) = run.take()
                    && let Some(c) = as_contains(&r)
                {
                    cands.push(c);
                }
            };
            for c in children {
                match analyze(c) {
                    Info::Exact(s) => {
                        let next = run.as_ref().and_then(|r| cross(r, &s));
                        match next {
                            Some(n) => run = Some(n),
                            None => {
                                all_exact = false;
                                close(&mut run, &mut candidates);
                                run = Some(s);
                            }
                        }
                    }
                    Info::Contains(s) => {
                        all_exact = false;
                        close(&mut run, &mut candidates);
                        candidates.push(s);
                        run = Some(vec![Vec::new()]);
                    }
                    Info::Any => {
                        all_exact = false;
                        close(&mut run, &mut candidates);
                        run = Some(vec![Vec::new()]);
                    }
                }
            }
            if all_exact && let Some(r) = run {
                return Info::Exact(r);
            }
            close(&mut run, &mut candidates);
            candidates
                .into_iter()
                .max_by_key(|c| score(c))
                .map_or(Info::Any, Info::Contains)
        }
        HirKind::Alternation(children) => {
            let infos: Vec<Info> = children.iter().map(analyze).collect();
            if infos.iter().all(|i| matches!(i, Info::Exact(_))) {
                let all: Vec<Vec<u8>> = infos
                    .into_iter()
                    .flat_map(|i| match i {
                        Info::Exact(s) => s,
                        _ => Vec::new(),
                    })
                    .collect();
                let all = dedup(all);
                if all.len() <= MAX_EXACT {
                    return Info::Exact(all);
                }
                return as_contains(&all).map_or(Info::Any, Info::Contains);
            }
            let mut union = Vec::new();
            for i in infos {
                match i {
                    Info::Any => return Info::Any,
                    Info::Exact(s) | Info::Contains(s) => {
                        if s.iter().any(Vec::is_empty) {
                            return Info::Any;
                        }
                        union.extend(s);
                    }
                }
            }
            let union = minimize(union);
            if union.len() > MAX_SET {
                Info::Any
            } else {
                Info::Contains(union)
            }
        }
    }
}

/// The literals one of which every match of `pattern` (PCRE syntax, as the rules write it)
/// contains, case-folded; `None` when there is no such set.
pub fn regex_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let translated = crate::pattern::translate(pattern);
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .build()
        .parse(&translated)
        .ok()?;
    match analyze(&hir) {
        Info::Exact(s) => as_contains(&s),
        Info::Contains(s) => Some(minimize(s)),
        Info::Any => None,
    }
}

/// The literal set for an operator, if it has one (never for negated operators: a value
/// that does not match is what they look for).
pub fn required(op: &Operator) -> Option<Vec<Vec<u8>>> {
    if op.negated {
        return None;
    }
    let set = match &op.kind {
        OpKind::Rx(p) if !p.is_backtracking() => regex_literals(p.source())?,
        OpKind::Pm(p) => {
            let phrases = p.phrases();
            if phrases.iter().any(Vec::is_empty) {
                return None;
            }
            minimize(phrases.iter().map(|s| fold(s)).collect())
        }
        OpKind::Contains(_)
        | OpKind::ContainsWord(_)
        | OpKind::BeginsWith(_)
        | OpKind::EndsWith(_)
        | OpKind::Streq(_) => {
            let l = op.literal.as_ref().filter(|l| !l.is_empty())?;
            vec![fold(&l[..l.len().min(MAX_LEN)])]
        }
        OpKind::StrMatch(_) => {
            let l = op.arg.as_bytes();
            if l.is_empty() {
                return None;
            }
            vec![fold(&l[..l.len().min(MAX_LEN)])]
        }
        // The validators match a value that holds a byte they refuse: one outside the
        // ranges, a `%` (a bad escape needs one), a byte of 0x80 or more (ASCII is valid
        // UTF-8). As single-byte literals these are exact, and the scan's byte set decides.
        OpKind::ValidateByteRange(allowed) => (0..=255u8)
            .filter(|&b| !allowed[usize::from(b)])
            .map(|b| vec![b])
            .collect(),
        OpKind::ValidateUrlEncoding => vec![b"%".to_vec()],
        OpKind::ValidateUtf8Encoding => (0x80..=0xffu8).map(|b| vec![b]).collect(),
        _ => return None,
    };
    (!set.is_empty() && set.len() <= MAX_SET).then_some(set)
}

/// 256 bits: which bytes occur.
pub type ByteSet = [u64; 4];

fn byte_set_add(s: &mut ByteSet, b: u8) {
    s[usize::from(b >> 6)] |= 1u64 << (b & 63);
}

/// Whether two byte sets share a byte.
pub fn bytes_intersect(a: &ByteSet, b: &ByteSet) -> bool {
    (a[0] & b[0]) | (a[1] & b[1]) | (a[2] & b[2]) | (a[3] & b[3]) != 0
}

/// A rule's prefilter: the value must contain one of `bytes`, or one of the multi-byte
/// literals `lits` (ids into the rule set's [`LiteralTable`], sorted).
#[derive(Debug, Clone, Default)]
pub struct Required {
    /// Single-byte literals (both cases of letters).
    pub bytes: ByteSet,
    /// Multi-byte literal ids, sorted.
    pub lits: Box<[u32]>,
    /// The bit that a scan sets when it finds one of `lits` (see [`LiteralTable::scan`]);
    /// rules with the same literal list share it. `None` when `lits` is empty.
    pub bit: Option<u32>,
}

impl Required {
    /// Whether a value scanned into `bytes` and `bits` may match.
    #[inline]
    pub fn may_match(&self, bytes: &ByteSet, bits: &[u64]) -> bool {
        bytes_intersect(&self.bytes, bytes)
            || self.bit.is_some_and(|b| {
                bits.get(b as usize / 64)
                    .is_some_and(|w| w & (1u64 << (b % 64)) != 0)
            })
    }
}

/// Every multi-byte literal of every rule, matched together in one pass.
///
/// A scan does not list the literals it found: each literal knows the bits of the literal
/// lists (the rules' [`Required::bit`]) it belongs to, and a scan sets those, so that asking
/// whether a rule may match is one bit test and merging the scans of many values is an OR
/// of a few words.
#[derive(Debug, Default)]
pub struct LiteralTable {
    ac: Option<AhoCorasick>,
    len: usize,
    /// For literal `i`, the bits `bits[starts[i]..starts[i + 1]]`.
    starts: Box<[u32]>,
    bits: Box<[u32]>,
    /// Words in a scan's bit set.
    words: usize,
    /// This table's identity in the per-thread scan memo (0: not memoised).
    memo_id: u64,
    /// Whether scans use the memo.
    memo: bool,
}

/// Slots in each thread's scan memo.
const MEMO_SLOTS: usize = 512;

/// What a scan found: the bytes present and the literal-list bits.
#[derive(Default)]
struct Found {
    bytes: ByteSet,
    bits: Vec<u64>,
}

thread_local! {
    static MEMO: std::cell::RefCell<crate::memo::Memo<Found>> =
        std::cell::RefCell::new(crate::memo::Memo::new(MEMO_SLOTS));
}

/// Interns literals while rules are compiled, then builds the table.
#[derive(Debug, Default)]
pub struct LiteralInterner {
    ids: std::collections::HashMap<Vec<u8>, u32>,
    lits: Vec<Vec<u8>>,
    /// Distinct literal lists -> their bit.
    lists: std::collections::HashMap<Box<[u32]>, u32>,
}

impl LiteralInterner {
    /// The prefilter for a literal set.
    pub fn required(&mut self, set: &[Vec<u8>]) -> Required {
        let mut r = Required::default();
        let mut lits = Vec::new();
        for s in set {
            if let [b] = s.as_slice() {
                byte_set_add(&mut r.bytes, *b);
                byte_set_add(&mut r.bytes, b.to_ascii_uppercase());
                byte_set_add(&mut r.bytes, b.to_ascii_lowercase());
            } else {
                let next = self.lits.len() as u32;
                let id = *self.ids.entry(s.clone()).or_insert_with(|| {
                    self.lits.push(s.clone());
                    next
                });
                lits.push(id);
            }
        }
        lits.sort_unstable();
        lits.dedup();
        r.lits = lits.into_boxed_slice();
        if !r.lits.is_empty() {
            let next = self.lists.len() as u32;
            r.bit = Some(*self.lists.entry(r.lits.clone()).or_insert(next));
        }
        r
    }

    /// Build the matcher.
    pub fn build(self) -> Result<LiteralTable, String> {
        if self.lits.is_empty() {
            return Ok(LiteralTable::default());
        }
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&self.lits)
            .map_err(|e| format!("cannot build the literal prefilter: {e}"))?;
        let mut of_lit: Vec<Vec<u32>> = vec![Vec::new(); self.lits.len()];
        for (list, &bit) in &self.lists {
            for &l in list.iter() {
                of_lit[l as usize].push(bit);
            }
        }
        let mut starts = Vec::with_capacity(of_lit.len() + 1);
        let mut bits = Vec::new();
        for mut b in of_lit {
            b.sort_unstable();
            starts.push(bits.len() as u32);
            bits.extend(b);
        }
        starts.push(bits.len() as u32);
        Ok(LiteralTable {
            ac: Some(ac),
            len: self.lits.len(),
            starts: starts.into_boxed_slice(),
            bits: bits.into_boxed_slice(),
            words: self.lists.len().div_ceil(64),
            memo_id: crate::memo::new_owner(),
            memo: true,
        })
    }
}

impl LiteralTable {
    /// Number of multi-byte literals.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kind of automaton (for diagnostics).
    pub fn kind(&self) -> String {
        self.ac.as_ref().map_or_else(
            || "none".into(),
            |a| format!("{:?}, {} bytes", a.kind(), a.memory_usage()),
        )
    }

    /// Use the per-thread scan memo (on by default) or not.
    pub fn set_memo(&mut self, on: bool) {
        self.memo = on;
    }

    /// Words in the bit set [`LiteralTable::scan`] fills.
    pub fn words(&self) -> usize {
        self.words
    }

    /// Scan `hay`: returns which bytes occur, and sets in `bits` (at least
    /// [`LiteralTable::words`] long, all zero) the bit of every literal list one of whose
    /// literals occurs.
    ///
    /// A value of up to 256 bytes that this thread scanned recently with this table is
    /// answered from a per-thread memo: header values, cookie flags and common arguments
    /// recur from request to request, and the automaton walk is the largest single cost of
    /// a benign request. The memo holds 512 values per thread, two-way set-associative by
    /// a keyed hash, and compares them in full.
    pub fn scan(&self, hay: &[u8], bits: &mut [u64]) -> ByteSet {
        if !self.memo
            || self.memo_id == 0
            || hay.len() > crate::memo::MAX_VALUE
            || bits.len() < self.words
        {
            return self.scan_uncached(hay, bits);
        }
        debug_assert!(bits[..self.words].iter().all(|w| *w == 0));
        MEMO.with(|m| {
            let Ok(mut m) = m.try_borrow_mut() else {
                return self.scan_uncached(hay, bits);
            };
            if let Some(f) = m.get(self.memo_id, 0, hay) {
                bits[..self.words].copy_from_slice(&f.bits);
                return f.bytes;
            }
            let bytes = self.scan_uncached(hay, bits);
            let f = m.claim(self.memo_id, 0, hay);
            f.bytes = bytes;
            f.bits.clear();
            f.bits.extend_from_slice(&bits[..self.words]);
            bytes
        })
    }

    /// [`LiteralTable::scan`] without the memo.
    pub fn scan_uncached(&self, hay: &[u8], bits: &mut [u64]) -> ByteSet {
        let mut bytes: ByteSet = [0; 4];
        for &b in hay {
            byte_set_add(&mut bytes, b);
        }
        if let Some(ac) = &self.ac
            && hay.len() >= 2
        {
            for m in ac.find_overlapping_iter(hay) {
                let l = m.pattern().as_usize();
                let (from, to) = (self.starts[l] as usize, self.starts[l + 1] as usize);
                for &b in &self.bits[from..to] {
                    bits[b as usize / 64] |= 1u64 << (b % 64);
                }
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &str) -> Option<Vec<String>> {
        regex_literals(p).map(|v| {
            v.into_iter()
                .map(|s| String::from_utf8_lossy(&s).into_owned())
                .collect()
        })
    }

    #[test]
    fn literal_sets_from_regexes() {
        assert_eq!(lits("(?i)union\\s+select"), Some(vec!["select".into()]));
        assert_eq!(lits("foo|bar"), Some(vec!["bar".into(), "foo".into()]));
        assert_eq!(lits("(?i:<script)"), Some(vec!["<script".into()]));
        assert_eq!(lits("a?b?"), None);
        assert_eq!(lits(".*"), None);
        assert_eq!(lits("[a-z]+"), None);
        assert_eq!(lits("^$"), None);
        // A class of a few bytes becomes single-byte literals.
        assert_eq!(lits("[<>]"), Some(vec!["<".into(), ">".into()]));
        // Optional parts widen the exact set: ab, abc.
        assert_eq!(lits("abc?"), Some(vec!["ab".into()]));
        // A repetition contains its first `min` copies.
        assert_eq!(lits(r"(?:^|/)\.{2,3}/"), Some(vec!["..".into()]));
        assert_eq!(lits("(?:ab){2,}"), Some(vec!["abab".into()]));
        assert_eq!(lits("x+"), Some(vec!["x".into()]));
        // Long literals are cut.
        assert_eq!(
            lits("abcdefghijklmnopqrstuvwxyz"),
            Some(vec!["abcdefgh".into()])
        );
        // Look-around is not understood by the linear engine's parser: no prefilter.
        assert_eq!(lits("a(?=b)"), None);
    }

    #[test]
    fn a_prefilter_never_rejects_a_match() {
        let cases = [
            (r"(?i)\b(?:union|select)\b", "x UNION y"),
            (r"(?:<|%3C)script", "%3Cscript"),
            (r"\.\./", "../../etc/passwd"),
            (r"(?i)on(?:error|load)\s*=", "ONERROR ="),
            (r"[\x00-\x08]", "a\x01"),
        ];
        for (p, hay) in cases {
            let re = crate::pattern::Pattern::new(p).expect("compiles");
            assert!(re.is_match(hay.as_bytes()).expect("decided"), "{p}");
            let Some(set) = regex_literals(p) else {
                continue;
            };
            let mut i = LiteralInterner::default();
            let req = i.required(&set);
            let table = i.build().expect("builds");
            let mut bits = vec![0u64; table.words()];
            let bytes = table.scan(hay.as_bytes(), &mut bits);
            assert!(req.may_match(&bytes, &bits), "{p} on {hay:?}: {set:?}");
        }
    }

    #[test]
    fn the_validators_prefilters_are_the_bytes_they_refuse() {
        let op = |name: &str, arg: &str| {
            let raw = crate::seclang::parse_operator(&format!("@{name} {arg}"));
            Operator::compile(&raw, std::path::Path::new(".")).expect("compiles")
        };
        let ops = [
            op("validateByteRange", "1-255"),
            op("validateByteRange", "32-36,38-126"),
            op("validateByteRange", "9,10,13,32-126,128-255"),
            op("validateUrlEncoding", ""),
            op("validateUtf8Encoding", ""),
        ];
        // Every byte alone, then generated values: wherever an operator matches, its
        // prefilter lets the value through (and it refuses only what cannot match).
        let mut values: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b, b'a', b]).collect();
        let mut x = 0x2545_f491_u32;
        for n in 0..4000usize {
            let v = (0..n % 23)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    // Mostly printable, some controls, `%` and high bytes.
                    match x % 16 {
                        0 => b'%',
                        1 => (x >> 8) as u8,
                        _ => b' ' + ((x >> 8) % 95) as u8,
                    }
                })
                .collect();
            values.push(v);
        }
        for o in &ops {
            let set = required(o).expect("a validator has a prefilter");
            let mut i = LiteralInterner::default();
            let req = i.required(&set);
            let table = i.build().expect("builds");
            let mut refused = 0;
            for v in &values {
                let mut bits = vec![0u64; table.words()];
                let bytes = table.scan(v, &mut bits);
                let mut out = crate::operator::OpOutput::default();
                let matched = o.exec(v, b"", false, None, &mut out);
                let may = req.may_match(&bytes, &bits);
                assert!(
                    !matched || may,
                    "{} refused {v:?}, which it matches",
                    o.name
                );
                refused += usize::from(!may);
            }
            assert!(refused > 0, "{} refused nothing", o.name);
        }
    }

    /// A table over a few overlapping literals, each in its own list (one bit each).
    fn table(words: &[&str]) -> LiteralTable {
        let mut i = LiteralInterner::default();
        for w in words {
            i.required(&[w.as_bytes().to_vec()]);
        }
        i.build().expect("builds")
    }

    #[test]
    fn the_scan_memo_answers_what_a_scan_does() {
        let a = table(&["select", "union", "../", "<script", "on", "ab"]);
        let b = table(&["select", "etc/passwd", "ab"]);
        // More values than slots (collisions and evictions), each asked several times, by
        // two tables (the same value gives each table its own answer).
        let values: Vec<Vec<u8>> = (0..3000u32)
            .map(|n| match n % 5 {
                0 => format!("UNION select {n}").into_bytes(),
                1 => format!("../../etc/passwd/{n}").into_bytes(),
                2 => format!("<ScRiPt>{n}").into_bytes(),
                3 => vec![b'a' + (n % 26) as u8; (n % 300) as usize],
                _ => format!("value {n} ab").into_bytes(),
            })
            .collect();
        for round in 0..3 {
            for (k, v) in values.iter().enumerate() {
                for t in [&a, &b] {
                    let mut got = vec![0u64; t.words()];
                    let mut want = vec![0u64; t.words()];
                    let gb = t.scan(v, &mut got);
                    let wb = t.scan_uncached(v, &mut want);
                    assert_eq!((gb, &got), (wb, &want), "round {round}, value {k}");
                }
            }
        }
    }
}
