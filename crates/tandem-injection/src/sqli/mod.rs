//! libinjection's SQL-injection detector: tokenizer, folding, fingerprint lookup and the
//! false-positive reducer, ported from `libinjection_sqli.c` (3.9.2).
//!
//! The port keeps libinjection's structure and its byte-level quirks on purpose, because
//! equivalence is the point: a fingerprint that differs from libinjection's on some input is
//! a rule that fires (or not) differently from ModSecurity or Coraza with the same CRS.
//! Quirks kept, each marked `quirk:` below, include:
//! - C's `strchr(set, ch)` finds the terminating NUL, so NUL counts as a member of every
//!   character set used with `strspn`-like scans and as a delimiter in `strcspn`-like ones;
//! - `char` is signed on the platforms libinjection is deployed on, so comparisons such as
//!   `ch <= 32` treat bytes >= 0x80 as negative;
//! - token values are truncated to 31 bytes and later lookups use the truncated value;
//! - `$foo$ ... $foo$` strings search for the closing tag from a wrong offset.
//!
//! Everything lives on the stack: a call allocates nothing.

#[rustfmt::skip]
mod data;

use crate::Fingerprint;

/// How the tokenizer dispatches on the first byte of a token (libinjection's
/// `char_parse_map`, generated into [`data::CHAR_CLASS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CharClass {
    White,
    Op1,
    Op2,
    Backslash,
    Dash,
    String,
    Hash,
    Number,
    Slash,
    Char,
    Var,
    Other,
    Money,
    Tick,
    Word,
    UString,
    QString,
    NqString,
    XString,
    BString,
    EString,
    BWord,
}

// Token types; the byte is the character that appears in the fingerprint.
const T_NONE: u8 = 0;
const T_KEYWORD: u8 = b'k';
const T_UNION: u8 = b'U';
const T_GROUP: u8 = b'B';
const T_EXPRESSION: u8 = b'E';
const T_SQLTYPE: u8 = b't';
const T_FUNCTION: u8 = b'f';
const T_BAREWORD: u8 = b'n';
const T_NUMBER: u8 = b'1';
const T_VARIABLE: u8 = b'v';
const T_STRING: u8 = b's';
const T_OPERATOR: u8 = b'o';
const T_LOGIC_OPERATOR: u8 = b'&';
const T_COMMENT: u8 = b'c';
const T_COLLATE: u8 = b'A';
const T_LEFTPARENS: u8 = b'(';
const T_RIGHTPARENS: u8 = b')';
const T_LEFTBRACE: u8 = b'{';
const T_RIGHTBRACE: u8 = b'}';
const T_DOT: u8 = b'.';
const T_COMMA: u8 = b',';
const T_COLON: u8 = b':';
const T_SEMICOLON: u8 = b';';
const T_TSQL: u8 = b'T';
const T_UNKNOWN: u8 = b'?';
const T_EVIL: u8 = b'X';
const T_BACKSLASH: u8 = b'\\';

const CHAR_SINGLE: u8 = b'\'';
const CHAR_DOUBLE: u8 = b'"';
const CHAR_TICK: u8 = b'`';

/// Token values hold at most this many bytes (libinjection's `val[32]` with its NUL).
const TOKEN_VAL: usize = 31;
const MAX_TOKENS: usize = 5;

/// The contexts libinjection tries: how the input is assumed to start, and which dialect's
/// comment rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flags {
    quote: u8,
    mysql: bool,
}

impl Flags {
    const NONE_ANSI: Flags = Flags {
        quote: 0,
        mysql: false,
    };
    const NONE_MYSQL: Flags = Flags {
        quote: 0,
        mysql: true,
    };
    const SINGLE_ANSI: Flags = Flags {
        quote: CHAR_SINGLE,
        mysql: false,
    };
    const SINGLE_MYSQL: Flags = Flags {
        quote: CHAR_SINGLE,
        mysql: true,
    };
    const DOUBLE_MYSQL: Flags = Flags {
        quote: CHAR_DOUBLE,
        mysql: true,
    };
}

#[derive(Debug, Clone, Copy)]
struct Token {
    pos: usize,
    len: usize,
    /// For variables, the number of leading `@` (only used to print tokens).
    count: u8,
    ty: u8,
    str_open: u8,
    str_close: u8,
    val: [u8; TOKEN_VAL + 1],
}

impl Token {
    const EMPTY: Token = Token {
        pos: 0,
        len: 0,
        count: 0,
        ty: T_NONE,
        str_open: 0,
        str_close: 0,
        val: [0; TOKEN_VAL + 1],
    };

    /// `st_assign`: the value is truncated to 31 bytes, the length with it.
    fn assign(&mut self, ty: u8, pos: usize, value: &[u8]) {
        let last = value.len().min(TOKEN_VAL);
        self.ty = ty;
        self.pos = pos;
        self.len = last;
        self.val[..last].copy_from_slice(&value[..last]);
        self.val[last] = 0;
    }

    fn assign_char(&mut self, ty: u8, pos: usize, value: u8) {
        self.ty = ty;
        self.pos = pos;
        self.len = 1;
        self.val[0] = value;
        self.val[1] = 0;
    }

    fn value(&self) -> &[u8] {
        &self.val[..self.len]
    }

    /// `cstrcasecmp(upper, val, len) == 0`: same length, equal after upper-casing a-z.
    fn is(&self, upper: &[u8]) -> bool {
        eq_upper(self.value(), upper)
    }

    fn is_arithmetic_op(&self) -> bool {
        self.ty == T_OPERATOR
            && self.len == 1
            && matches!(self.val[0], b'*' | b'/' | b'-' | b'+' | b'%')
    }

    fn is_unary_op(&self) -> bool {
        if self.ty != T_OPERATOR {
            return false;
        }
        match self.len {
            1 => matches!(self.val[0], b'+' | b'-' | b'!' | b'~'),
            2 => self.val[0] == b'!' && self.val[1] == b'!',
            3 => self.is(b"NOT"),
            _ => false,
        }
    }
}

fn eq_upper(value: &[u8], upper: &[u8]) -> bool {
    value.len() == upper.len()
        && value
            .iter()
            .zip(upper)
            .all(|(&v, &u)| v.to_ascii_uppercase() == u)
}

/// Keyword lookup (libinjection's `bsearch_keyword_type` for words): the token type of
/// `word`, compared case-insensitively for a-z only, or 0.
fn lookup_word(word: &[u8]) -> u8 {
    if word.is_empty() || word.len() > TOKEN_VAL {
        return T_NONE;
    }
    let mut upper = [0u8; TOKEN_VAL];
    let mut h: u32 = 0x811C_9DC5;
    for (dst, &b) in upper.iter_mut().zip(word) {
        let u = if b.is_ascii_lowercase() { b - 0x20 } else { b };
        *dst = u;
        h ^= u32::from(u);
        h = h.wrapping_mul(0x0100_0193);
    }
    let key = &upper[..word.len()];
    let mask = data::KEYWORD_SLOTS.len() - 1;
    let mut slot = h as usize & mask;
    loop {
        let entry = data::KEYWORD_SLOTS[slot];
        if entry == 0 {
            return T_NONE;
        }
        let (kw, ty) = data::KEYWORDS[usize::from(entry) - 1];
        if kw == key {
            return ty;
        }
        slot = (slot + 1) & mask;
    }
}

/// Whether a fingerprint (token types) is in libinjection's fingerprint set; the set is
/// compared upper-cased, as `libinjection_sqli_blacklist` does.
fn is_fingerprint(fp: &[u8]) -> bool {
    if fp.is_empty() || fp.len() > MAX_TOKENS {
        return false;
    }
    let packed = fp
        .iter()
        .fold(0u64, |v, &b| (v << 8) | u64::from(b.to_ascii_uppercase()));
    data::FINGERPRINTS.binary_search(&packed).is_ok()
}

/// `char_is_white`: C's `strchr(" \t\n\v\f\r\240", ch)`, which also matches NUL.
fn is_white(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0 | 0)
}

/// Length of the prefix of `s` made of bytes in `accept` (quirk: NUL always accepted).
fn span(s: &[u8], accept: &[u8]) -> usize {
    s.iter()
        .position(|&c| c != 0 && !accept.contains(&c))
        .unwrap_or(s.len())
}

/// Length of the prefix of `s` free of bytes in `reject` (quirk: NUL always rejects).
fn cspan(s: &[u8], reject: &[u8]) -> usize {
    s.iter()
        .position(|&c| c == 0 || reject.contains(&c))
        .unwrap_or(s.len())
}

/// Index of the first `c0 c1` pair starting at or after `from`.
fn find2(s: &[u8], from: usize, c0: u8, c1: u8) -> Option<usize> {
    if from >= s.len() {
        return None;
    }
    s[from..]
        .windows(2)
        .position(|w| w[0] == c0 && w[1] == c1)
        .map(|i| from + i)
}

fn find1(s: &[u8], from: usize, c: u8) -> Option<usize> {
    if from >= s.len() {
        return None;
    }
    s[from..].iter().position(|&b| b == c).map(|i| from + i)
}

/// Bytes are C `char`s, signed on x86 and arm Linux: >= 0x80 compares as negative.
fn signed(b: u8) -> i8 {
    b as i8
}

const WORD_DELIMS: &[u8] = b" []{}<>:\\?=@!#~+-*/&|^%(),';\t\n\x0b\x0c\r\"\xa0";
const VAR_DELIMS: &[u8] = b" <>:\\?=@!#~+-*/&|^%(),';\t\n\x0b\x0c\r'`\"";

/// Tokenizer state for one pass over the input in one context.
struct Tokenizer<'a> {
    s: &'a [u8],
    flags: Flags,
    pos: usize,
    stats_comment_ddx: u32,
    stats_comment_hash: u32,
    stats_tokens: u32,
}

impl<'a> Tokenizer<'a> {
    fn new(s: &'a [u8], flags: Flags) -> Self {
        Tokenizer {
            s,
            flags,
            pos: 0,
            stats_comment_ddx: 0,
            stats_comment_hash: 0,
            stats_tokens: 0,
        }
    }

    /// `libinjection_sqli_tokenize`: the next token into `t`, or false at the end.
    fn next(&mut self, t: &mut Token) -> bool {
        let s = self.s;
        if s.is_empty() {
            return false;
        }
        *t = Token::EMPTY;
        if self.pos == 0 && self.flags.quote != 0 {
            self.pos = parse_string_core(s, 0, t, self.flags.quote, 0);
            self.stats_tokens += 1;
            return true;
        }
        while self.pos < s.len() {
            let pos = self.pos;
            self.pos = match data::CHAR_CLASS[usize::from(s[pos])] {
                CharClass::White => pos + 1,
                CharClass::Op1 => parse_operator1(s, pos, t),
                CharClass::Op2 => parse_operator2(s, pos, t),
                CharClass::Backslash => parse_backslash(s, pos, t),
                CharClass::Dash => self.parse_dash(pos, t),
                CharClass::String => parse_string_core(s, pos, t, s[pos], 1),
                CharClass::Hash => self.parse_hash(pos, t),
                CharClass::Number => parse_number(s, pos, t),
                CharClass::Slash => parse_slash(s, pos, t),
                CharClass::Char => {
                    t.assign_char(s[pos], pos, s[pos]);
                    pos + 1
                }
                CharClass::Var => parse_var(s, pos, t),
                CharClass::Other => {
                    t.assign_char(T_UNKNOWN, pos, s[pos]);
                    pos + 1
                }
                CharClass::Money => parse_money(s, pos, t),
                CharClass::Tick => parse_tick(s, pos, t),
                CharClass::Word => parse_word(s, pos, t),
                CharClass::UString => parse_ustring(s, pos, t),
                CharClass::QString => parse_qstring_core(s, pos, 0, t),
                CharClass::NqString => parse_nqstring(s, pos, t),
                CharClass::XString => parse_xstring(s, pos, t),
                CharClass::BString => parse_bstring(s, pos, t),
                CharClass::EString => parse_estring(s, pos, t),
                CharClass::BWord => parse_bword(s, pos, t),
            };
            if t.ty != T_NONE {
                self.stats_tokens += 1;
                return true;
            }
        }
        false
    }

    /// `#` is an operator in ANSI SQL and an end-of-line comment in MySQL.
    fn parse_hash(&mut self, pos: usize, t: &mut Token) -> usize {
        self.stats_comment_hash += 1;
        if self.flags.mysql {
            self.stats_comment_hash += 1;
            parse_eol_comment(self.s, pos, t)
        } else {
            t.assign_char(T_OPERATOR, pos, b'#');
            pos + 1
        }
    }

    /// `--` followed by white space or the end is a comment everywhere; followed by
    /// anything else it is a comment in ANSI SQL and two unary minus signs in MySQL.
    #[allow(clippy::if_same_then_else)] // libinjection's five cases, kept apart
    fn parse_dash(&mut self, pos: usize, t: &mut Token) -> usize {
        let s = self.s;
        let slen = s.len();
        if pos + 2 < slen && s[pos + 1] == b'-' && is_white(s[pos + 2]) {
            parse_eol_comment(s, pos, t)
        } else if pos + 2 == slen && s[pos + 1] == b'-' {
            parse_eol_comment(s, pos, t)
        } else if pos + 1 < slen && s[pos + 1] == b'-' && !self.flags.mysql {
            self.stats_comment_ddx += 1;
            parse_eol_comment(s, pos, t)
        } else {
            t.assign_char(T_OPERATOR, pos, b'-');
            pos + 1
        }
    }
}

fn parse_operator1(s: &[u8], pos: usize, t: &mut Token) -> usize {
    t.assign_char(T_OPERATOR, pos, s[pos]);
    pos + 1
}

fn parse_eol_comment(s: &[u8], pos: usize, t: &mut Token) -> usize {
    match find1(s, pos, b'\n') {
        None => {
            t.assign(T_COMMENT, pos, &s[pos..]);
            s.len()
        }
        Some(end) => {
            t.assign(T_COMMENT, pos, &s[pos..end]);
            end + 1
        }
    }
}

/// `/* ... */` comments; a nested `/*` or a MySQL `/*!` comment makes the input
/// unparsable (type X), which libinjection treats as SQLi.
fn parse_slash(s: &[u8], pos: usize, t: &mut Token) -> usize {
    let slen = s.len();
    if pos + 1 == slen || s[pos + 1] != b'*' {
        return parse_operator1(s, pos, t);
    }
    let end = find2(s, pos + 2, b'*', b'/');
    let clen = match end {
        None => slen - pos,
        Some(e) => e + 2 - pos,
    };
    let mut ctype = T_COMMENT;
    // Nested comment: a "/*" that starts inside, up to and including the "*" of "*/".
    // With no closing "*/", libinjection 3.9.2's pointer arithmetic makes this check
    // find nothing (4.0 made that explicit); the port follows.
    if let Some(e) = end
        && e >= pos + 3
        && s[pos + 2..=e].windows(2).any(|w| w == b"/*")
    {
        ctype = T_EVIL;
    }
    if ctype == T_COMMENT && pos + 2 < slen && s[pos + 2] == b'!' {
        ctype = T_EVIL;
    }
    t.assign(ctype, pos, &s[pos..pos + clen]);
    pos + clen
}

/// `\N` is MySQL's NULL; a lone backslash is its own token type.
fn parse_backslash(s: &[u8], pos: usize, t: &mut Token) -> usize {
    if pos + 1 < s.len() && s[pos + 1] == b'N' {
        t.assign(T_NUMBER, pos, &s[pos..pos + 2]);
        pos + 2
    } else {
        t.assign_char(T_BACKSLASH, pos, s[pos]);
        pos + 1
    }
}

fn parse_operator2(s: &[u8], pos: usize, t: &mut Token) -> usize {
    let slen = s.len();
    if pos + 1 >= slen {
        return parse_operator1(s, pos, t);
    }
    if pos + 2 < slen && &s[pos..pos + 3] == b"<=>" {
        t.assign(T_OPERATOR, pos, &s[pos..pos + 3]);
        return pos + 3;
    }
    let ch = lookup_word(&s[pos..pos + 2]);
    if ch != T_NONE {
        t.assign(ch, pos, &s[pos..pos + 2]);
        return pos + 2;
    }
    if s[pos] == b':' {
        t.assign(T_COLON, pos, &s[pos..pos + 1]);
        pos + 1
    } else {
        parse_operator1(s, pos, t)
    }
}

/// Whether the quote at `qpos` is preceded by an odd number of backslashes, counting no
/// further back than `start`.
fn is_backslash_escaped(s: &[u8], qpos: usize, start: usize) -> bool {
    let mut n = 0usize;
    let mut i = qpos;
    while i > start && s[i - 1] == b'\\' {
        n += 1;
        i -= 1;
    }
    n & 1 == 1
}

/// A quoted string starting at `pos`; `offset` is how many opening bytes to skip (0 when
/// the quote is only assumed, in the quote contexts).
fn parse_string_core(s: &[u8], pos: usize, t: &mut Token, delim: u8, offset: usize) -> usize {
    let slen = s.len();
    let start = pos + offset;
    let mut qpos = find1(s, start, delim);
    t.str_open = if offset > 0 { delim } else { 0 };
    loop {
        match qpos {
            None => {
                t.assign(T_STRING, start, &s[start.min(slen)..]);
                t.str_close = 0;
                return slen;
            }
            Some(q) if is_backslash_escaped(s, q, start) => {
                qpos = find1(s, q + 1, delim);
            }
            Some(q) if q + 1 < slen && s[q + 1] == s[q] => {
                qpos = find1(s, q + 2, delim);
            }
            Some(q) => {
                t.assign(T_STRING, start, &s[start..q]);
                t.str_close = delim;
                return q + 1;
            }
        }
    }
}

/// `E'...'` (PostgreSQL escape string) and `N'...'` (MySQL national string).
fn parse_estring(s: &[u8], pos: usize, t: &mut Token) -> usize {
    if pos + 2 >= s.len() || s[pos + 1] != CHAR_SINGLE {
        return parse_word(s, pos, t);
    }
    parse_string_core(s, pos, t, CHAR_SINGLE, 2)
}

/// `U&'...'` (unicode string).
fn parse_ustring(s: &[u8], pos: usize, t: &mut Token) -> usize {
    if pos + 2 < s.len() && s[pos + 1] == b'&' && s[pos + 2] == b'\'' {
        let next = parse_string_core(s, pos + 2, t, s[pos + 2], 1);
        t.str_open = b'u';
        if t.str_close == b'\'' {
            t.str_close = b'u';
        }
        next
    } else {
        parse_word(s, pos, t)
    }
}

/// Oracle's `q'X...X'` strings (and `nq'...'` with `offset` 1).
fn parse_qstring_core(s: &[u8], start: usize, offset: usize, t: &mut Token) -> usize {
    let slen = s.len();
    let pos = start + offset;
    if pos >= slen || (s[pos] != b'q' && s[pos] != b'Q') || pos + 2 >= slen || s[pos + 1] != b'\'' {
        return parse_word(s, start, t);
    }
    let mut ch = s[pos + 2];
    // quirk: signed char, so bytes >= 0x80 are "< 33" too.
    if signed(ch) < 33 {
        return parse_word(s, start, t);
    }
    ch = match ch {
        b'(' => b')',
        b'[' => b']',
        b'{' => b'}',
        b'<' => b'>',
        c => c,
    };
    match find2(s, pos + 3, ch, b'\'') {
        None => {
            t.assign(T_STRING, pos + 3, &s[pos + 3..]);
            t.str_open = b'q';
            t.str_close = 0;
            slen
        }
        Some(end) => {
            t.assign(T_STRING, pos + 3, &s[pos + 3..end]);
            t.str_open = b'q';
            t.str_close = b'q';
            end + 2
        }
    }
}

fn parse_nqstring(s: &[u8], pos: usize, t: &mut Token) -> usize {
    if pos + 2 < s.len() && s[pos + 1] == CHAR_SINGLE {
        return parse_estring(s, pos, t);
    }
    parse_qstring_core(s, pos, 1, t)
}

/// `b'0101'` and `x'BEEF'` literals are numbers.
fn parse_prefixed_literal(s: &[u8], pos: usize, t: &mut Token, digits: &[u8]) -> usize {
    let slen = s.len();
    if pos + 2 >= slen || s[pos + 1] != b'\'' {
        return parse_word(s, pos, t);
    }
    let wlen = span(&s[pos + 2..], digits);
    if pos + 2 + wlen >= slen || s[pos + 2 + wlen] != b'\'' {
        return parse_word(s, pos, t);
    }
    t.assign(T_NUMBER, pos, &s[pos..pos + wlen + 3]);
    pos + 2 + wlen + 1
}

fn parse_bstring(s: &[u8], pos: usize, t: &mut Token) -> usize {
    parse_prefixed_literal(s, pos, t, b"01")
}

fn parse_xstring(s: &[u8], pos: usize, t: &mut Token) -> usize {
    parse_prefixed_literal(s, pos, t, b"0123456789ABCDEFabcdef")
}

/// SQL Server `[bracketed words]`.
fn parse_bword(s: &[u8], pos: usize, t: &mut Token) -> usize {
    match find1(s, pos, b']') {
        None => {
            t.assign(T_BAREWORD, pos, &s[pos..]);
            s.len()
        }
        Some(end) => {
            t.assign(T_BAREWORD, pos, &s[pos..=end]);
            end + 1
        }
    }
}

/// Words: keywords, functions, operators spelled as words, or barewords. A word that
/// contains `.` or a backtick is split after a keyword prefix (`SELECT.1`, ``SELECT`a` ``).
fn parse_word(s: &[u8], pos: usize, t: &mut Token) -> usize {
    let wlen = cspan(&s[pos..], WORD_DELIMS);
    t.assign(T_BAREWORD, pos, &s[pos..pos + wlen]);
    for i in 0..t.len {
        let delim = t.val[i];
        if delim == b'.' || delim == b'`' {
            let ch = lookup_word(&t.val[..i]);
            if ch != T_NONE && ch != T_BAREWORD {
                *t = Token::EMPTY;
                t.assign(ch, pos, &s[pos..pos + i]);
                return pos + i;
            }
        }
    }
    if wlen <= TOKEN_VAL {
        let ch = lookup_word(&s[pos..pos + wlen]);
        t.ty = if ch == T_NONE { T_BAREWORD } else { ch };
    }
    pos + wlen
}

/// MySQL backtick identifiers: a function name stays a function, anything else is a word.
fn parse_tick(s: &[u8], pos: usize, t: &mut Token) -> usize {
    let next = parse_string_core(s, pos, t, CHAR_TICK, 1);
    // quirk: looks up the (possibly truncated) token value.
    let ch = lookup_word(t.value());
    t.ty = if ch == T_FUNCTION {
        T_FUNCTION
    } else {
        T_BAREWORD
    };
    next
}

/// `@var`, `@@var`, ``@@`var` ``, `@'var'`.
fn parse_var(s: &[u8], pos: usize, t: &mut Token) -> usize {
    let slen = s.len();
    let mut pos = pos + 1;
    if pos < slen && s[pos] == b'@' {
        pos += 1;
        t.count = 2;
    } else {
        t.count = 1;
    }
    if pos < slen {
        if s[pos] == b'`' {
            let next = parse_tick(s, pos, t);
            t.ty = T_VARIABLE;
            return next;
        } else if s[pos] == CHAR_SINGLE || s[pos] == CHAR_DOUBLE {
            let next = parse_string_core(s, pos, t, s[pos], 1);
            t.ty = T_VARIABLE;
            return next;
        }
    }
    let xlen = cspan(&s[pos..], VAR_DELIMS);
    t.assign(T_VARIABLE, pos, &s[pos..pos + xlen]);
    pos + xlen
}

/// `$1,000.00` money literals, PostgreSQL `$$...$$` and `$tag$...$tag$` strings.
fn parse_money(s: &[u8], pos: usize, t: &mut Token) -> usize {
    let slen = s.len();
    if pos + 1 == slen {
        t.assign_char(T_BAREWORD, pos, b'$');
        return slen;
    }
    let xlen = span(&s[pos + 1..], b"0123456789.,");
    if xlen == 0 {
        if s[pos + 1] == b'$' {
            return match find2(s, pos + 2, b'$', b'$') {
                None => {
                    t.assign(T_STRING, pos + 2, &s[pos + 2..]);
                    t.str_open = b'$';
                    t.str_close = 0;
                    slen
                }
                Some(end) => {
                    t.assign(T_STRING, pos + 2, &s[pos + 2..end]);
                    t.str_open = b'$';
                    t.str_close = b'$';
                    end + 2
                }
            };
        }
        let xlen = span(
            &s[pos + 1..],
            b"abcdefghjiklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        );
        if xlen == 0 {
            t.assign_char(T_BAREWORD, pos, b'$');
            return pos + 1;
        }
        if pos + xlen + 1 == slen || s[pos + xlen + 1] != b'$' {
            t.assign_char(T_BAREWORD, pos, b'$');
            return pos + 1;
        }
        // quirk: libinjection 3.9.2 searches for the closing `$tag$` from index xlen + 2
        // (not pos + xlen + 2) through slen - pos, and treats a hit before the body as
        // "not found".
        let body = pos + xlen + 2;
        let tag = &s[pos..body];
        let nlen = tag.len();
        let from = xlen + 2;
        let hay_end = slen - pos; // exclusive end of the searched region
        let found = if hay_end >= from + nlen {
            (from..=hay_end - nlen).find(|&j| &s[j..j + nlen] == tag)
        } else {
            None
        };
        return match found {
            Some(j) if j >= body => {
                t.assign(T_STRING, body, &s[body..j]);
                t.str_open = b'$';
                t.str_close = b'$';
                j + xlen + 2
            }
            _ => {
                t.assign(T_STRING, body, &s[body..]);
                t.str_open = b'$';
                t.str_close = 0;
                slen
            }
        };
    }
    if xlen == 1 && s[pos + 1] == b'.' {
        return parse_word(s, pos, t);
    }
    t.assign(T_NUMBER, pos, &s[pos..pos + 1 + xlen]);
    pos + 1 + xlen
}

fn parse_number(s: &[u8], pos: usize, t: &mut Token) -> usize {
    let slen = s.len();
    if s[pos] == b'0' && pos + 1 < slen {
        let digits: Option<&[u8]> = match s[pos + 1] {
            b'X' | b'x' => Some(b"0123456789ABCDEFabcdef"),
            b'B' | b'b' => Some(b"01"),
            _ => None,
        };
        if let Some(digits) = digits {
            let xlen = span(&s[pos + 2..], digits);
            if xlen == 0 {
                t.assign(T_BAREWORD, pos, &s[pos..pos + 2]);
                return pos + 2;
            }
            t.assign(T_NUMBER, pos, &s[pos..pos + 2 + xlen]);
            return pos + 2 + xlen;
        }
    }
    let start = pos;
    let mut pos = pos;
    while pos < slen && s[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < slen && s[pos] == b'.' {
        pos += 1;
        while pos < slen && s[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos - start == 1 {
            t.assign_char(T_DOT, start, b'.');
            return pos;
        }
    }
    let mut have_e = false;
    let mut have_exp = false;
    if pos < slen && (s[pos] == b'E' || s[pos] == b'e') {
        have_e = true;
        pos += 1;
        if pos < slen && (s[pos] == b'+' || s[pos] == b'-') {
            pos += 1;
        }
        while pos < slen && s[pos].is_ascii_digit() {
            have_exp = true;
            pos += 1;
        }
    }
    // Oracle's float/double suffixes: "1.2f", "1fUNION".
    if pos < slen
        && matches!(s[pos], b'd' | b'D' | b'f' | b'F')
        && (pos + 1 == slen || is_white(s[pos + 1]) || matches!(s[pos + 1], b';' | b'u' | b'U'))
    {
        pos += 1;
    }
    if have_e && !have_exp {
        // "1234.e", "10.10E", ".E" are words, not numbers.
        t.assign(T_BAREWORD, start, &s[start..pos]);
    } else {
        t.assign(T_NUMBER, start, &s[start..pos]);
    }
    pos
}

/// `syntax_merge_words`: two words that form a known phrase ("UNION ALL", "NOT IN")
/// become one token.
fn merge_words(a: &mut Token, b: &Token) -> bool {
    if !matches!(
        a.ty,
        T_KEYWORD
            | T_BAREWORD
            | T_OPERATOR
            | T_UNION
            | T_FUNCTION
            | T_EXPRESSION
            | T_TSQL
            | T_SQLTYPE
    ) {
        return false;
    }
    if !matches!(
        b.ty,
        T_KEYWORD
            | T_BAREWORD
            | T_OPERATOR
            | T_UNION
            | T_FUNCTION
            | T_EXPRESSION
            | T_TSQL
            | T_SQLTYPE
            | T_LOGIC_OPERATOR
    ) {
        return false;
    }
    let sz1 = a.len;
    let sz2 = b.len;
    let sz3 = sz1 + sz2 + 1;
    if sz3 > TOKEN_VAL {
        return false;
    }
    let mut tmp = [0u8; TOKEN_VAL];
    tmp[..sz1].copy_from_slice(&a.val[..sz1]);
    tmp[sz1] = b' ';
    tmp[sz1 + 1..sz3].copy_from_slice(&b.val[..sz2]);
    let ch = lookup_word(&tmp[..sz3]);
    if ch == T_NONE {
        return false;
    }
    let pos = a.pos;
    a.assign(ch, pos, &tmp[..sz3]);
    true
}

/// One context's analysis: tokens, fold, fingerprint.
struct State<'a> {
    tz: Tokenizer<'a>,
    tokens: [Token; 8],
    fingerprint: [u8; 8],
    fp_len: usize,
}

impl<'a> State<'a> {
    fn new(s: &'a [u8], flags: Flags) -> Self {
        State {
            tz: Tokenizer::new(s, flags),
            tokens: [Token::EMPTY; 8],
            fingerprint: [0; 8],
            fp_len: 0,
        }
    }

    /// Reads the next token into slot `i`; a comment is kept aside (`last_comment`)
    /// instead of taking a slot. Returns `more`.
    fn pull(&mut self, pos: &mut usize, last_comment: &mut Token) -> bool {
        let more = self.tz.next(&mut self.tokens[*pos]);
        if more {
            if self.tokens[*pos].ty == T_COMMENT {
                *last_comment = self.tokens[*pos];
            } else {
                last_comment.ty = T_NONE;
                *pos += 1;
            }
        }
        more
    }

    /// `libinjection_sqli_fold`: reduce the token stream to at most five tokens.
    ///
    /// The chain of rules mirrors libinjection's one for one, in its order, so the two can
    /// be audited side by side; hence rules with identical bodies are not merged.
    #[allow(clippy::if_same_then_else, clippy::blocks_in_conditions)]
    fn fold(&mut self) -> usize {
        let mut last_comment = Token::EMPTY;
        let mut pos: usize = 0;
        let mut left: usize = 0;
        let mut more = true;

        // Skip leading comments, left parens, SQL types and unary operators.
        while more {
            more = self.tz.next(&mut self.tokens[0]);
            let t = &self.tokens[0];
            if !(t.ty == T_COMMENT || t.ty == T_LEFTPARENS || t.ty == T_SQLTYPE || t.is_unary_op())
            {
                break;
            }
        }
        if !more {
            return 0;
        }
        pos += 1;

        loop {
            if pos >= MAX_TOKENS {
                let ty = |i: usize| self.tokens[i].ty;
                if (ty(0) == T_NUMBER
                    && (ty(1) == T_OPERATOR || ty(1) == T_COMMA)
                    && ty(2) == T_LEFTPARENS
                    && ty(3) == T_NUMBER
                    && ty(4) == T_RIGHTPARENS)
                    || (ty(0) == T_BAREWORD
                        && ty(1) == T_OPERATOR
                        && ty(2) == T_LEFTPARENS
                        && (ty(3) == T_BAREWORD || ty(3) == T_NUMBER)
                        && ty(4) == T_RIGHTPARENS)
                    || (ty(0) == T_NUMBER
                        && ty(1) == T_RIGHTPARENS
                        && ty(2) == T_COMMA
                        && ty(3) == T_LEFTPARENS
                        && ty(4) == T_NUMBER)
                    || (ty(0) == T_BAREWORD
                        && ty(1) == T_RIGHTPARENS
                        && ty(2) == T_OPERATOR
                        && ty(3) == T_LEFTPARENS
                        && ty(4) == T_BAREWORD)
                {
                    if pos > MAX_TOKENS {
                        self.tokens[1] = self.tokens[MAX_TOKENS];
                        pos = 2;
                    } else {
                        pos = 1;
                    }
                    left = 0;
                }
            }

            if !more || left >= MAX_TOKENS {
                left = pos;
                break;
            }

            // Get up to two tokens.
            while more && pos <= MAX_TOKENS && pos - left < 2 {
                more = self.pull(&mut pos, &mut last_comment);
            }
            if pos - left < 2 {
                left = pos;
                continue;
            }

            let a = self.tokens[left];
            let b = self.tokens[left + 1];

            // Two-token folds.
            if a.ty == T_STRING && b.ty == T_STRING {
                pos -= 1;
                continue;
            } else if a.ty == T_SEMICOLON && b.ty == T_SEMICOLON {
                pos -= 1;
                continue;
            } else if (a.ty == T_OPERATOR || a.ty == T_LOGIC_OPERATOR)
                && (b.is_unary_op() || b.ty == T_SQLTYPE)
            {
                pos -= 1;
                left = 0;
                continue;
            } else if a.ty == T_LEFTPARENS && b.is_unary_op() {
                pos -= 1;
                left = left.saturating_sub(1);
                continue;
            } else if {
                let (head, tail) = self.tokens.split_at_mut(left + 1);
                merge_words(&mut head[left], &tail[0])
            } {
                pos -= 1;
                left = left.saturating_sub(1);
                continue;
            } else if a.ty == T_SEMICOLON
                && b.ty == T_FUNCTION
                && (b.val[0] == b'I' || b.val[0] == b'i')
                && (b.val[1] == b'F' || b.val[1] == b'f')
            {
                // IF after a semicolon is Transact-SQL control flow, not a function.
                self.tokens[left + 1].ty = T_TSQL;
                continue;
            } else if (a.ty == T_BAREWORD || a.ty == T_VARIABLE)
                && b.ty == T_LEFTPARENS
                && (a.is(b"USER_ID")
                    || a.is(b"USER_NAME")
                    || a.is(b"DATABASE")
                    || a.is(b"PASSWORD")
                    || a.is(b"USER")
                    || a.is(b"CURRENT_USER")
                    || a.is(b"CURRENT_DATE")
                    || a.is(b"CURRENT_TIME")
                    || a.is(b"CURRENT_TIMESTAMP")
                    || a.is(b"LOCALTIME")
                    || a.is(b"LOCALTIMESTAMP"))
            {
                // Function names common enough to be column names: a function only when
                // followed by "(".
                self.tokens[left].ty = T_FUNCTION;
                continue;
            } else if a.ty == T_KEYWORD && (a.is(b"IN") || a.is(b"NOT IN")) {
                self.tokens[left].ty = if b.ty == T_LEFTPARENS {
                    T_OPERATOR
                } else {
                    T_BAREWORD
                };
                continue;
            } else if a.ty == T_OPERATOR && (a.is(b"LIKE") || a.is(b"NOT LIKE")) {
                if b.ty == T_LEFTPARENS {
                    self.tokens[left].ty = T_FUNCTION;
                }
            } else if a.ty == T_SQLTYPE
                && matches!(
                    b.ty,
                    T_BAREWORD
                        | T_NUMBER
                        | T_SQLTYPE
                        | T_LEFTPARENS
                        | T_FUNCTION
                        | T_VARIABLE
                        | T_STRING
                )
            {
                self.tokens[left] = b;
                pos -= 1;
                left = 0;
                continue;
            } else if a.ty == T_COLLATE && b.ty == T_BAREWORD {
                // Too many collation names to list: one with "_" is a type.
                if b.val.iter().take_while(|&&c| c != 0).any(|&c| c == b'_') {
                    self.tokens[left + 1].ty = T_SQLTYPE;
                    left = 0;
                }
            } else if a.ty == T_BACKSLASH {
                if b.is_arithmetic_op() {
                    // T-SQL parses '\%1' as '0 % 1'.
                    self.tokens[left].ty = T_NUMBER;
                } else {
                    self.tokens[left] = b;
                    pos -= 1;
                }
                left = 0;
                continue;
            } else if a.ty == T_LEFTPARENS && b.ty == T_LEFTPARENS {
                pos -= 1;
                left = 0;
                continue;
            } else if a.ty == T_RIGHTPARENS && b.ty == T_RIGHTPARENS {
                pos -= 1;
                left = 0;
                continue;
            } else if a.ty == T_LEFTBRACE && b.ty == T_BAREWORD {
                // MySQL's "{ ``" degenerate case is blacklisted outright.
                if b.len == 0 {
                    self.tokens[left + 1].ty = T_EVIL;
                    return left + 2;
                }
                // ODBC "{foo expr}": strip "{ foo".
                left = 0;
                pos -= 2;
                continue;
            } else if b.ty == T_RIGHTBRACE {
                pos -= 1;
                left = 0;
                continue;
            }

            // Get one more token.
            while more && pos <= MAX_TOKENS && pos - left < 3 {
                more = self.pull(&mut pos, &mut last_comment);
            }
            if pos - left < 3 {
                left = pos;
                continue;
            }

            let a = self.tokens[left];
            let b = self.tokens[left + 1];
            let c = self.tokens[left + 2];

            // Three-token folds.
            if a.ty == T_NUMBER && b.ty == T_OPERATOR && c.ty == T_NUMBER {
                pos -= 2;
                left = 0;
                continue;
            } else if a.ty == T_OPERATOR && b.ty != T_LEFTPARENS && c.ty == T_OPERATOR {
                left = 0;
                pos -= 2;
                continue;
            } else if a.ty == T_LOGIC_OPERATOR && c.ty == T_LOGIC_OPERATOR {
                pos -= 2;
                left = 0;
                continue;
            } else if a.ty == T_VARIABLE
                && b.ty == T_OPERATOR
                && matches!(c.ty, T_VARIABLE | T_NUMBER | T_BAREWORD)
            {
                pos -= 2;
                left = 0;
                continue;
            } else if matches!(a.ty, T_BAREWORD | T_NUMBER)
                && b.ty == T_OPERATOR
                && matches!(c.ty, T_NUMBER | T_BAREWORD)
            {
                pos -= 2;
                left = 0;
                continue;
            } else if matches!(a.ty, T_BAREWORD | T_NUMBER | T_VARIABLE | T_STRING)
                && b.ty == T_OPERATOR
                && b.value() == b"::"
                && c.ty == T_SQLTYPE
            {
                pos -= 2;
                left = 0;
                continue;
            } else if matches!(a.ty, T_BAREWORD | T_NUMBER | T_STRING | T_VARIABLE)
                && b.ty == T_COMMA
                && matches!(c.ty, T_NUMBER | T_BAREWORD | T_STRING | T_VARIABLE)
            {
                pos -= 2;
                left = 0;
                continue;
            } else if matches!(a.ty, T_EXPRESSION | T_GROUP | T_COMMA)
                && b.is_unary_op()
                && c.ty == T_LEFTPARENS
            {
                // "SELECT + (", "LIMIT + (": drop the unary operator.
                self.tokens[left + 1] = c;
                pos -= 1;
                left = 0;
                continue;
            } else if matches!(a.ty, T_KEYWORD | T_EXPRESSION | T_GROUP)
                && b.is_unary_op()
                && matches!(
                    c.ty,
                    T_NUMBER | T_BAREWORD | T_VARIABLE | T_STRING | T_FUNCTION
                )
            {
                // "select - 1": drop the unary operator.
                self.tokens[left + 1] = c;
                pos -= 1;
                left = 0;
                continue;
            } else if a.ty == T_COMMA
                && b.is_unary_op()
                && matches!(c.ty, T_NUMBER | T_BAREWORD | T_VARIABLE | T_STRING)
            {
                // ", -1" becomes ",1" and we back up to fold "1,1".
                self.tokens[left + 1] = c;
                left = 0;
                pos -= 3;
                continue;
            } else if a.ty == T_COMMA && b.is_unary_op() && c.ty == T_FUNCTION {
                // "1,-sin(1)" becomes "1,sin(1)".
                self.tokens[left + 1] = c;
                pos -= 1;
                left = 0;
                continue;
            } else if a.ty == T_BAREWORD && b.ty == T_DOT && c.ty == T_BAREWORD {
                // database.table
                pos -= 2;
                left = 0;
                continue;
            } else if a.ty == T_EXPRESSION && b.ty == T_DOT && c.ty == T_BAREWORD {
                // "select . `foo`" is "select `foo`".
                self.tokens[left + 1] = c;
                pos -= 1;
                left = 0;
                continue;
            } else if a.ty == T_FUNCTION && b.ty == T_LEFTPARENS && c.ty != T_RIGHTPARENS {
                // USER() takes no arguments: "user(foo)" is not that function.
                if a.is(b"USER") {
                    self.tokens[left].ty = T_BAREWORD;
                }
            }

            left += 1;
        }

        // Put back a trailing comment if there is room.
        if left < MAX_TOKENS && last_comment.ty == T_COMMENT {
            self.tokens[left] = last_comment;
            left += 1;
        }
        // A sixth token may have been read to decide the type of the fifth.
        left.min(MAX_TOKENS)
    }

    /// `libinjection_sqli_fingerprint`.
    fn fingerprint(&mut self) {
        let tlen = self.fold();
        // A trailing, empty, unclosed backtick word is PHP's magic comment.
        if tlen > 2 {
            let t = &mut self.tokens[tlen - 1];
            if t.ty == T_BAREWORD && t.str_open == CHAR_TICK && t.len == 0 && t.str_close == 0 {
                t.ty = T_COMMENT;
            }
        }
        for i in 0..tlen {
            self.fingerprint[i] = self.tokens[i].ty;
        }
        self.fp_len = tlen;
        if self.fingerprint[..tlen].contains(&T_EVIL) {
            self.fingerprint = [0; 8];
            self.fingerprint[0] = T_EVIL;
            self.fp_len = 1;
            self.tokens[0].ty = T_EVIL;
            self.tokens[0].val = [0; TOKEN_VAL + 1];
            self.tokens[0].val[0] = T_EVIL;
            self.tokens[0].len = 1;
            self.tokens[1].ty = T_NONE;
        }
    }

    fn fp(&self) -> &[u8] {
        &self.fingerprint[..self.fp_len]
    }

    /// `libinjection_sqli_check_fingerprint`: in the set, and not waved through by the
    /// false-positive reducer.
    fn is_sqli(&self) -> bool {
        is_fingerprint(self.fp()) && self.not_whitelist()
    }

    /// `libinjection_sqli_not_whitelist`: true means SQLi.
    fn not_whitelist(&self) -> bool {
        let fp = self.fp();
        let tlen = fp.len();
        let s = self.tz.s;
        let tok = &self.tokens;

        if tlen > 1 && fp[tlen - 1] == T_COMMENT {
            // SQL Server's audit log skips statements mentioning sp_password.
            if s.windows(11).any(|w| w == b"sp_password") {
                return true;
            }
        }

        match tlen {
            2 => {
                if fp[1] == T_UNION {
                    // "1 union" alone is too common in text.
                    return self.tz.stats_tokens != 2;
                }
                if tok[1].val[0] == b'#' {
                    return false;
                }
                if tok[0].ty == T_BAREWORD && tok[1].ty == T_COMMENT && tok[1].val[0] != b'/' {
                    return false;
                }
                if tok[0].ty == T_NUMBER && tok[1].ty == T_COMMENT && tok[1].val[0] == b'/' {
                    return true;
                }
                if tok[0].ty == T_NUMBER && tok[1].ty == T_COMMENT {
                    if self.tz.stats_tokens > 2 {
                        return true;
                    }
                    // quirk: indexes the input by the token's length, not its end, and
                    // compares as signed char.
                    let at = |i: usize| s.get(i).copied().unwrap_or(0);
                    let ch = at(tok[0].len);
                    if signed(ch) <= 32 {
                        return true;
                    }
                    if ch == b'/' && at(tok[0].len + 1) == b'*' {
                        return true;
                    }
                    if ch == b'-' && at(tok[0].len + 1) == b'-' {
                        return true;
                    }
                    return false;
                }
                // "1-- foo" in text is common; "1--" at the end is a scan.
                if tok[1].len > 2 && tok[1].val[0] == b'-' {
                    return false;
                }
            }
            3 => {
                if fp == b"sos" || fp == b"s&s" {
                    // ...foo" + "bar... with no outer quotes is SQLi; anything else not.
                    return tok[0].str_open == 0
                        && tok[2].str_close == 0
                        && tok[0].str_close == tok[2].str_open;
                } else if fp == b"s&n"
                    || fp == b"n&1"
                    || fp == b"1&1"
                    || fp == b"1&v"
                    || fp == b"1&s"
                {
                    // "sexy and 17" is not SQLi, "sexy and 17<18" is.
                    if self.tz.stats_tokens == 3 {
                        return false;
                    }
                } else if tok[1].ty == T_KEYWORD {
                    // Only "INTO OUTFILE" / "INTO DUMPFILE" make a keyword in the middle SQLi.
                    if tok[1].len < 5 || !eq_upper(&tok[1].val[..4], b"INTO") {
                        return false;
                    }
                }
            }
            _ => {}
        }
        true
    }
}

/// Runs one context: the fingerprint if that context's is SQLi, and whether the input
/// had comments that make a MySQL re-parse worthwhile (`reparse_as_mysql`).
fn try_context(input: &[u8], flags: Flags) -> (Option<Fingerprint>, bool) {
    let mut st = State::new(input, flags);
    st.fingerprint();
    let reparse = st.tz.stats_comment_ddx != 0 || st.tz.stats_comment_hash != 0;
    (st.is_sqli().then(|| Fingerprint::new(st.fp())), reparse)
}

/// `libinjection_is_sqli`: as-is (ANSI, then MySQL comments if the input had `--x` or `#`),
/// then assuming a leading single quote, then a leading double quote.
pub(crate) fn detect(input: &[u8]) -> Option<Fingerprint> {
    if input.is_empty() {
        return None;
    }
    let ansi_then_mysql = |ansi: Flags, mysql: Flags| match try_context(input, ansi) {
        (Some(fp), _) => Some(fp),
        (None, true) => try_context(input, mysql).0,
        (None, false) => None,
    };
    ansi_then_mysql(Flags::NONE_ANSI, Flags::NONE_MYSQL)
        .or_else(|| {
            input
                .contains(&CHAR_SINGLE)
                .then(|| ansi_then_mysql(Flags::SINGLE_ANSI, Flags::SINGLE_MYSQL))
                .flatten()
        })
        .or_else(|| {
            input
                .contains(&CHAR_DOUBLE)
                .then(|| try_context(input, Flags::DOUBLE_MYSQL).0)
                .flatten()
        })
}

/// Test access to the stages, printing tokens the way libinjection's `testdriver.c` does.
#[cfg(test)]
pub(crate) mod debug {
    use super::*;

    fn print(t: &Token, out: &mut Vec<u8>) {
        out.push(t.ty);
        out.push(b' ');
        if t.ty == T_VARIABLE {
            for _ in 0..t.count.min(2) {
                out.push(b'@');
            }
        }
        let quoted = t.ty == T_STRING || t.ty == T_VARIABLE;
        if quoted && t.str_open != 0 {
            out.push(t.str_open);
        }
        // printf("%s", val): up to the first NUL.
        out.extend(t.val.iter().take_while(|&&b| b != 0));
        if quoted && t.str_close != 0 {
            out.push(t.str_close);
        }
        out.push(b'\n');
    }

    /// All tokens in the ANSI, no-quote context (testdriver's "tokens" mode).
    pub(crate) fn tokens(input: &[u8]) -> Vec<u8> {
        let mut tz = Tokenizer::new(input, Flags::NONE_ANSI);
        let mut t = Token::EMPTY;
        let mut out = Vec::new();
        while tz.next(&mut t) {
            print(&t, &mut out);
        }
        out
    }

    /// The folded tokens in the ANSI, no-quote context (testdriver's "folding" mode).
    pub(crate) fn folded(input: &[u8]) -> Vec<u8> {
        let mut st = State::new(input, Flags::NONE_ANSI);
        let n = st.fold();
        let mut out = Vec::new();
        for t in &st.tokens[..n] {
            print(t, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_lookup_is_case_insensitive_and_exact() {
        assert_eq!(lookup_word(b"select"), T_EXPRESSION);
        assert_eq!(lookup_word(b"SeLeCt"), T_EXPRESSION);
        assert_eq!(lookup_word(b"UNION ALL"), T_UNION);
        assert_eq!(lookup_word(b"selectx"), T_NONE);
        assert_eq!(lookup_word(b""), T_NONE);
        assert_eq!(lookup_word(b"sel\0ct"), T_NONE);
        assert_eq!(lookup_word(b"\xc0select"), T_NONE);
    }

    #[test]
    fn every_keyword_is_found() {
        for (kw, ty) in data::KEYWORDS {
            assert_eq!(lookup_word(kw), ty, "{}", String::from_utf8_lossy(kw));
        }
    }

    #[test]
    fn fingerprint_set() {
        assert!(is_fingerprint(b"s&sos"));
        assert!(is_fingerprint(b"1UE"));
        assert!(!is_fingerprint(b"n"));
        assert!(!is_fingerprint(b""));
        assert_eq!(data::FINGERPRINTS.len(), 8367);
    }

    #[test]
    fn unterminated_string_at_end() {
        assert_eq!(debug::tokens(b"'"), b"s '\n");
    }
}
