//! Transformations (`t:...`): pure functions over bytes with ModSecurity's semantics.
//!
//! Each transformation writes into a caller-owned buffer and says whether it changed the
//! input, so a chain whose steps leave a value alone costs no copy: the transaction keeps
//! pointing at the previous step's bytes.

use md5::Digest as _;

/// One transformation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transform {
    /// Lower-case ASCII letters.
    Lowercase,
    /// Upper-case ASCII letters.
    Uppercase,
    /// `%XX` and `+`.
    UrlDecode,
    /// `%XX`, `%uXXXX` and `+`.
    UrlDecodeUni,
    /// Percent-encode.
    UrlEncode,
    /// HTML character references.
    HtmlEntityDecode,
    /// JavaScript escapes.
    JsDecode,
    /// CSS escapes.
    CssDecode,
    /// Shell command-line normalisation.
    CmdLine,
    /// Runs of whitespace to one space.
    CompressWhitespace,
    /// Drop whitespace.
    RemoveWhitespace,
    /// Drop NUL bytes.
    RemoveNulls,
    /// NUL bytes to spaces.
    ReplaceNulls,
    /// Drop comments.
    RemoveComments,
    /// Drop comment characters.
    RemoveCommentsChar,
    /// Comments to one space.
    ReplaceComments,
    /// Base64 decode, stopping at the first invalid character.
    Base64Decode,
    /// Base64 decode, skipping invalid characters.
    Base64DecodeExt,
    /// Base64 encode.
    Base64Encode,
    /// Hex decode.
    HexDecode,
    /// Hex encode.
    HexEncode,
    /// UTF-8 sequences to `%uHHHH`.
    Utf8ToUnicode,
    /// Resolve `.`/`..` and `//` in paths.
    NormalizePath,
    /// As `NormalizePath`, after turning `\` into `/`.
    NormalizePathWin,
    /// SHA-1 digest (binary).
    Sha1,
    /// MD5 digest (binary).
    Md5,
    /// Length as decimal text.
    Length,
    /// Trim whitespace both sides.
    Trim,
    /// Trim leading whitespace.
    TrimLeft,
    /// Trim trailing whitespace.
    TrimRight,
    /// ANSI C escape sequences.
    EscapeSeqDecode,
    /// SQL hex literals `0x...` decoded.
    SqlHexDecode,
}

impl Transform {
    /// The transformation for a `t:` name; `Ok(None)` for `none`.
    pub fn parse(name: &str) -> Result<Option<Transform>, String> {
        use Transform::*;
        Ok(Some(match name.to_ascii_lowercase().as_str() {
            "none" => return Ok(None),
            "lowercase" => Lowercase,
            "uppercase" => Uppercase,
            "urldecode" => UrlDecode,
            "urldecodeuni" => UrlDecodeUni,
            "urlencode" => UrlEncode,
            "htmlentitydecode" => HtmlEntityDecode,
            "jsdecode" => JsDecode,
            "cssdecode" => CssDecode,
            "cmdline" => CmdLine,
            "compresswhitespace" => CompressWhitespace,
            "removewhitespace" => RemoveWhitespace,
            "removenulls" => RemoveNulls,
            "replacenulls" => ReplaceNulls,
            "removecomments" => RemoveComments,
            "removecommentschar" => RemoveCommentsChar,
            "replacecomments" => ReplaceComments,
            "base64decode" => Base64Decode,
            "base64decodeext" => Base64DecodeExt,
            "base64encode" => Base64Encode,
            "hexdecode" => HexDecode,
            "hexencode" => HexEncode,
            "utf8tounicode" => Utf8ToUnicode,
            "normalizepath" | "normalisepath" => NormalizePath,
            "normalizepathwin" | "normalisepathwin" => NormalizePathWin,
            "sha1" => Sha1,
            "md5" => Md5,
            "length" => Length,
            "trim" => Trim,
            "trimleft" => TrimLeft,
            "trimright" => TrimRight,
            "escapeseqdecode" => EscapeSeqDecode,
            "sqlhexdecode" => SqlHexDecode,
            other => {
                return Err(format!(
                    "unknown transformation t:{other}; see docs/waf.md for the supported ones"
                ));
            }
        }))
    }

    /// The `t:` name.
    pub fn name(self) -> &'static str {
        use Transform::*;
        match self {
            Lowercase => "lowercase",
            Uppercase => "uppercase",
            UrlDecode => "urlDecode",
            UrlDecodeUni => "urlDecodeUni",
            UrlEncode => "urlEncode",
            HtmlEntityDecode => "htmlEntityDecode",
            JsDecode => "jsDecode",
            CssDecode => "cssDecode",
            CmdLine => "cmdLine",
            CompressWhitespace => "compressWhitespace",
            RemoveWhitespace => "removeWhitespace",
            RemoveNulls => "removeNulls",
            ReplaceNulls => "replaceNulls",
            RemoveComments => "removeComments",
            RemoveCommentsChar => "removeCommentsChar",
            ReplaceComments => "replaceComments",
            Base64Decode => "base64Decode",
            Base64DecodeExt => "base64DecodeExt",
            Base64Encode => "base64Encode",
            HexDecode => "hexDecode",
            HexEncode => "hexEncode",
            Utf8ToUnicode => "utf8toUnicode",
            NormalizePath => "normalizePath",
            NormalizePathWin => "normalizePathWin",
            Sha1 => "sha1",
            Md5 => "md5",
            Length => "length",
            Trim => "trim",
            TrimLeft => "trimLeft",
            TrimRight => "trimRight",
            EscapeSeqDecode => "escapeSeqDecode",
            SqlHexDecode => "sqlHexDecode",
        }
    }

    /// The bytes without which this transformation leaves a value unchanged, or `None` if it
    /// may change any value (digests, encodings, `length`). A value containing none of a
    /// chain's trigger bytes comes out of the chain as it went in, so the transaction skips
    /// the chain for it (see `tests::triggers_are_exact_enough`).
    pub fn triggers(self) -> Option<[u64; 4]> {
        use Transform::*;
        let mut set = [0u64; 4];
        let mut add = |bytes: &[u8]| {
            for &b in bytes {
                set[usize::from(b >> 6)] |= 1u64 << (b & 63);
            }
        };
        const SPACE: &[u8] = b" \t\n\r\x0b\x0c";
        let upper: Vec<u8> = (b'A'..=b'Z').collect();
        let lower: Vec<u8> = (b'a'..=b'z').collect();
        let high: Vec<u8> = (0x80..=0xffu8).collect();
        match self {
            Lowercase => add(&upper),
            Uppercase => add(&lower),
            UrlDecode | UrlDecodeUni => add(b"%+"),
            HtmlEntityDecode => add(b"&"),
            JsDecode | CssDecode | EscapeSeqDecode => add(b"\\"),
            CmdLine => {
                add(&upper);
                add(b"\"'\\^,; \t\r\n");
            }
            CompressWhitespace | RemoveWhitespace => {
                add(SPACE);
                add(&[0xa0]);
            }
            Trim | TrimLeft | TrimRight => add(SPACE),
            RemoveNulls | ReplaceNulls => add(&[0]),
            RemoveComments => add(b"/<-#"),
            RemoveCommentsChar => add(b"/*-<#"),
            ReplaceComments => add(b"/"),
            Utf8ToUnicode => add(&high),
            NormalizePath => add(b"/."),
            NormalizePathWin => add(b"/.\\"),
            // Only `0x` followed by hex digits is decoded.
            SqlHexDecode => add(b"xX"),
            UrlEncode | Base64Decode | Base64DecodeExt | Base64Encode | HexDecode | HexEncode
            | Sha1 | Md5 | Length => return None,
        }
        Some(set)
    }

    /// Apply to `input`, writing into `out` (cleared first). Returns `false` when the result
    /// equals the input, in which case `out` is meaningless.
    pub fn apply(self, input: &[u8], out: &mut Vec<u8>) -> bool {
        use Transform::*;
        out.clear();
        match self {
            Lowercase => {
                if !input.iter().any(u8::is_ascii_uppercase) {
                    return false;
                }
                out.extend(input.iter().map(u8::to_ascii_lowercase));
                true
            }
            Uppercase => {
                if !input.iter().any(u8::is_ascii_lowercase) {
                    return false;
                }
                out.extend(input.iter().map(u8::to_ascii_uppercase));
                true
            }
            UrlDecode => {
                if !input.iter().any(|&c| c == b'%' || c == b'+') {
                    return false;
                }
                url_decode(input, out, false);
                out.as_slice() != input
            }
            UrlDecodeUni => {
                if !input.iter().any(|&c| c == b'%' || c == b'+') {
                    return false;
                }
                url_decode(input, out, true);
                out.as_slice() != input
            }
            UrlEncode => {
                for &c in input {
                    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
                        out.push(c);
                    } else if c == b' ' {
                        out.push(b'+');
                    } else {
                        out.push(b'%');
                        out.push(HEX[(c >> 4) as usize]);
                        out.push(HEX[(c & 15) as usize]);
                    }
                }
                out.as_slice() != input
            }
            HtmlEntityDecode => {
                if memchr::memchr(b'&', input).is_none() {
                    return false;
                }
                html_entity_decode(input, out);
                out.as_slice() != input
            }
            JsDecode => {
                if memchr::memchr(b'\\', input).is_none() {
                    return false;
                }
                js_decode(input, out);
                out.as_slice() != input
            }
            CssDecode => {
                if memchr::memchr(b'\\', input).is_none() {
                    return false;
                }
                css_decode(input, out);
                out.as_slice() != input
            }
            CmdLine => {
                cmd_line(input, out);
                out.as_slice() != input
            }
            CompressWhitespace => {
                let mut in_ws = false;
                for &c in input {
                    if is_space(c) || c == 0xa0 {
                        if !in_ws {
                            out.push(b' ');
                            in_ws = true;
                        }
                    } else {
                        out.push(c);
                        in_ws = false;
                    }
                }
                out.as_slice() != input
            }
            RemoveWhitespace => {
                if !input.iter().any(|&c| is_space(c) || c == 0xa0) {
                    return false;
                }
                out.extend(input.iter().copied().filter(|&c| !is_space(c) && c != 0xa0));
                true
            }
            RemoveNulls => {
                if memchr::memchr(0, input).is_none() {
                    return false;
                }
                out.extend(input.iter().copied().filter(|&c| c != 0));
                true
            }
            ReplaceNulls => {
                if memchr::memchr(0, input).is_none() {
                    return false;
                }
                out.extend(input.iter().map(|&c| if c == 0 { b' ' } else { c }));
                true
            }
            RemoveComments => {
                remove_comments(input, out);
                out.as_slice() != input
            }
            RemoveCommentsChar => {
                remove_comments_char(input, out);
                out.as_slice() != input
            }
            ReplaceComments => {
                if memchr::memmem::find(input, b"/*").is_none() {
                    return false;
                }
                replace_comments(input, out);
                true
            }
            Base64Decode => {
                base64_decode(input, out, false);
                true
            }
            Base64DecodeExt => {
                base64_decode(input, out, true);
                true
            }
            Base64Encode => {
                base64_encode(input, out);
                true
            }
            HexDecode => {
                let mut i = 0;
                while i + 1 < input.len() {
                    match (hexval(input[i]), hexval(input[i + 1])) {
                        (Some(a), Some(b)) => out.push(a << 4 | b),
                        _ => break,
                    }
                    i += 2;
                }
                true
            }
            HexEncode => {
                for &c in input {
                    out.push(HEX[(c >> 4) as usize]);
                    out.push(HEX[(c & 15) as usize]);
                }
                true
            }
            Utf8ToUnicode => {
                if input.is_ascii() {
                    return false;
                }
                utf8_to_unicode(input, out);
                true
            }
            NormalizePath => {
                normalize_path(input, out, false);
                out.as_slice() != input
            }
            NormalizePathWin => {
                normalize_path(input, out, true);
                out.as_slice() != input
            }
            Sha1 => {
                out.extend_from_slice(&sha1::Sha1::digest(input));
                true
            }
            Md5 => {
                out.extend_from_slice(&md5::Md5::digest(input));
                true
            }
            Length => {
                out.extend_from_slice(input.len().to_string().as_bytes());
                true
            }
            Trim | TrimLeft | TrimRight => {
                let mut s = 0;
                let mut e = input.len();
                if self != TrimRight {
                    while s < e && is_space(input[s]) {
                        s += 1;
                    }
                }
                if self != TrimLeft {
                    while e > s && is_space(input[e - 1]) {
                        e -= 1;
                    }
                }
                if s == 0 && e == input.len() {
                    return false;
                }
                out.extend_from_slice(&input[s..e]);
                true
            }
            EscapeSeqDecode => {
                if memchr::memchr(b'\\', input).is_none() {
                    return false;
                }
                escape_seq_decode(input, out);
                out.as_slice() != input
            }
            SqlHexDecode => {
                sql_hex_decode(input, out);
                out.as_slice() != input
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn x2c(a: u8, b: u8) -> u8 {
    (hexval(a).unwrap_or(0) << 4) | hexval(b).unwrap_or(0)
}

/// ModSecurity's `urlDecode`/`urlDecodeUni`: invalid escapes are kept as they are.
pub(crate) fn url_decode(input: &[u8], out: &mut Vec<u8>, uni: bool) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        let c = input[i];
        if c == b'%' {
            if uni && i + 1 < n && (input[i + 1] == b'u' || input[i + 1] == b'U') {
                if i + 5 < n && input[i + 2..i + 6].iter().all(|c| c.is_ascii_hexdigit()) {
                    let mut d = x2c(input[i + 4], input[i + 5]);
                    // Full-width ASCII (U+FF01..U+FF5E) maps to ASCII.
                    if d > 0
                        && d < 0x5f
                        && (input[i + 2] | 0x20) == b'f'
                        && (input[i + 3] | 0x20) == b'f'
                    {
                        d += 0x20;
                    }
                    out.push(d);
                    i += 6;
                } else {
                    out.push(input[i]);
                    out.push(input[i + 1]);
                    i += 2;
                }
            } else if i + 2 < n
                && input[i + 1].is_ascii_hexdigit()
                && input[i + 2].is_ascii_hexdigit()
            {
                out.push(x2c(input[i + 1], input[i + 2]));
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else if c == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
}

/// Decode `%XX` only (`+` stays), as paths are decoded.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    percent_decode_into(input, &mut out);
    out
}

/// [`percent_decode`] appending to `out`.
pub(crate) fn percent_decode_into(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && i + 2 < input.len()
            && input[i + 1].is_ascii_hexdigit()
            && input[i + 2].is_ascii_hexdigit()
        {
            out.push(x2c(input[i + 1], input[i + 2]));
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
}

/// Decode `%XX` and `+`, as the query-string and body parsers do for names and values.
pub(crate) fn url_decode_args(input: &[u8], out: &mut Vec<u8>) {
    url_decode(input, out, false);
}

fn html_entity_decode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] != b'&' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let rest = &input[i + 1..];
        if rest.first() == Some(&b'#') {
            let (hex, start) = match rest.get(1) {
                Some(b'x') | Some(b'X') => (true, 2),
                _ => (false, 1),
            };
            let digits = rest[start..]
                .iter()
                .take_while(|c| {
                    if hex {
                        c.is_ascii_hexdigit()
                    } else {
                        c.is_ascii_digit()
                    }
                })
                .count();
            if digits > 0 {
                let txt = &rest[start..start + digits];
                let mut v: u32 = 0;
                for &d in txt {
                    let dv = if hex {
                        u32::from(hexval(d).unwrap_or(0))
                    } else {
                        u32::from(d - b'0')
                    };
                    v = v
                        .saturating_mul(if hex { 16 } else { 10 })
                        .saturating_add(dv);
                }
                out.push(v as u8);
                let mut j = i + 1 + start + digits;
                if input.get(j) == Some(&b';') {
                    j += 1;
                }
                i = j;
                continue;
            }
            out.push(b'&');
            i += 1;
            continue;
        }
        let name_len = rest
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        let name = &rest[..name_len];
        let rep = match name.to_ascii_lowercase().as_slice() {
            b"quot" => Some(b'"'),
            b"amp" => Some(b'&'),
            b"lt" => Some(b'<'),
            b"gt" => Some(b'>'),
            b"nbsp" => Some(0xa0),
            b"apos" => Some(b'\''),
            _ => None,
        };
        match rep {
            Some(r) => {
                out.push(r);
                let mut j = i + 1 + name_len;
                if input.get(j) == Some(&b';') {
                    j += 1;
                }
                i = j;
            }
            None => {
                out.push(b'&');
                i += 1;
            }
        }
    }
}

fn fullwidth(hi1: u8, hi2: u8, lo: u8) -> u8 {
    if lo > 0 && lo < 0x5f && (hi1 | 0x20) == b'f' && (hi2 | 0x20) == b'f' {
        lo + 0x20
    } else {
        lo
    }
}

fn js_decode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        if i + 5 < n
            && input[i + 1] == b'u'
            && input[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit)
        {
            let lo = x2c(input[i + 4], input[i + 5]);
            out.push(fullwidth(input[i + 2], input[i + 3], lo));
            i += 6;
        } else if i + 3 < n
            && input[i + 1] == b'x'
            && input[i + 2].is_ascii_hexdigit()
            && input[i + 3].is_ascii_hexdigit()
        {
            out.push(x2c(input[i + 2], input[i + 3]));
            i += 4;
        } else if i + 1 < n && (b'0'..=b'7').contains(&input[i + 1]) {
            let mut j = 1;
            while j < 4 && i + j < n && (b'0'..=b'7').contains(&input[i + j]) {
                j += 1;
            }
            let mut digits = &input[i + 1..i + j];
            // An octal escape above \377 takes only two digits.
            if digits.len() == 3 && digits[0] > b'3' {
                digits = &digits[..2];
            }
            let v = digits.iter().fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += 1 + digits.len();
        } else if i + 1 < n {
            let c = input[i + 1];
            out.push(match c {
                b'a' => 7,
                b'b' => 8,
                b'f' => 12,
                b'n' => 10,
                b'r' => 13,
                b't' => 9,
                b'v' => 11,
                other => other,
            });
            i += 2;
        } else {
            out.push(b'\\');
            i += 1;
        }
    }
}

fn css_decode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        if i + 1 >= n {
            // A lone trailing backslash is dropped.
            i += 1;
            continue;
        }
        let hexlen = input[i + 1..]
            .iter()
            .take(6)
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        if hexlen > 0 {
            let h = &input[i + 1..i + 1 + hexlen];
            let lo = if hexlen >= 2 {
                x2c(h[hexlen - 2], h[hexlen - 1])
            } else {
                hexval(h[0]).unwrap_or(0)
            };
            // Full-width forms: FFxx or 00FFxx.
            let v = match hexlen {
                4 => fullwidth(h[0], h[1], lo),
                6 if h[0] == b'0' && h[1] == b'0' => fullwidth(h[2], h[3], lo),
                _ => lo,
            };
            out.push(v);
            i += 1 + hexlen;
            if i < n && is_space(input[i]) {
                i += 1;
            }
        } else if input[i + 1] == b'\n' {
            i += 2;
        } else {
            out.push(input[i + 1]);
            i += 2;
        }
    }
}

fn cmd_line(input: &[u8], out: &mut Vec<u8>) {
    let mut space = false;
    for &a in input {
        match a {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(a);
            }
            _ => {
                out.push(a.to_ascii_lowercase());
                space = false;
            }
        }
    }
}

fn remove_comments(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    let mut incomment = false;
    while i < n {
        if !incomment {
            if input[i] == b'/' && input.get(i + 1) == Some(&b'*') {
                incomment = true;
                i += 2;
            } else if input[i..].starts_with(b"<!--") {
                incomment = true;
                i += 4;
            } else if input[i..].starts_with(b"--") || input[i] == b'#' {
                break;
            } else {
                out.push(input[i]);
                i += 1;
            }
        } else if input[i..].starts_with(b"*/") {
            incomment = false;
            i += 2;
        } else if input[i..].starts_with(b"-->") {
            incomment = false;
            i += 3;
        } else {
            i += 1;
        }
    }
    if incomment {
        out.push(b' ');
    }
}

fn remove_comments_char(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        let r = &input[i..];
        if r.starts_with(b"/*") || r.starts_with(b"*/") || r.starts_with(b"--") {
            i += 2;
        } else if r.starts_with(b"<!--") {
            i += 4;
        } else if r.starts_with(b"-->") {
            i += 3;
        } else if r[0] == b'#' {
            i += 1;
        } else {
            out.push(r[0]);
            i += 1;
        }
    }
}

fn replace_comments(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    let mut incomment = false;
    while i < n {
        if !incomment {
            if input[i] == b'/' && input.get(i + 1) == Some(&b'*') {
                incomment = true;
                i += 2;
            } else {
                out.push(input[i]);
                i += 1;
            }
        } else if input[i] == b'*' && input.get(i + 1) == Some(&b'/') {
            incomment = false;
            i += 2;
            out.push(b' ');
        } else {
            i += 1;
        }
    }
    if incomment {
        out.push(b' ');
    }
}

fn b64val(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

pub(crate) fn base64_decode(input: &[u8], out: &mut Vec<u8>, forgiving: bool) {
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in input {
        if c == b'=' {
            if forgiving {
                continue;
            }
            break;
        }
        let Some(v) = b64val(c) else {
            if forgiving {
                continue;
            }
            break;
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
}

fn base64_encode(input: &[u8], out: &mut Vec<u8>) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63]);
        out.push(T[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63]
        } else {
            b'='
        });
    }
}

fn utf8_to_unicode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        let c = input[i];
        let (len, init) = if c < 0x80 {
            out.push(c);
            i += 1;
            continue;
        } else if c & 0xe0 == 0xc0 {
            (2, u32::from(c & 0x1f))
        } else if c & 0xf0 == 0xe0 {
            (3, u32::from(c & 0x0f))
        } else if c & 0xf8 == 0xf0 {
            (4, u32::from(c & 0x07))
        } else {
            out.push(c);
            i += 1;
            continue;
        };
        if i + len > n || !input[i + 1..i + len].iter().all(|b| b & 0xc0 == 0x80) {
            out.push(c);
            i += 1;
            continue;
        }
        let mut cp = init;
        for b in &input[i + 1..i + len] {
            cp = (cp << 6) | u32::from(b & 0x3f);
        }
        out.extend_from_slice(format!("%u{cp:04x}").as_bytes());
        i += len;
    }
}

fn normalize_path(input: &[u8], out: &mut Vec<u8>, win: bool) {
    let src: Vec<u8> = if win {
        input
            .iter()
            .map(|&c| if c == b'\\' { b'/' } else { c })
            .collect()
    } else {
        input.to_vec()
    };
    let absolute = src.first() == Some(&b'/');
    let trailing = src.last() == Some(&b'/')
        || src.ends_with(b"/.")
        || src.ends_with(b"/..")
        || src == b"."
        || src == b"..";
    let mut parts: Vec<&[u8]> = Vec::new();
    for seg in src.split(|&c| c == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|p| *p != b"..") {
                    parts.pop();
                } else if !absolute {
                    parts.push(seg);
                }
            }
            _ => parts.push(seg),
        }
    }
    if absolute {
        out.push(b'/');
    }
    for (k, p) in parts.iter().enumerate() {
        if k > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(p);
    }
    if trailing && !parts.is_empty() {
        out.push(b'/');
    }
}

fn escape_seq_decode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] != b'\\' || i + 1 >= n {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let c = input[i + 1];
        let simple = match c {
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(10),
            b'r' => Some(13),
            b't' => Some(9),
            b'v' => Some(11),
            b'\\' => Some(b'\\'),
            b'?' => Some(b'?'),
            b'\'' => Some(b'\''),
            b'"' => Some(b'"'),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            i += 2;
        } else if (c == b'x' || c == b'X')
            && i + 3 < n
            && input[i + 2].is_ascii_hexdigit()
            && input[i + 3].is_ascii_hexdigit()
        {
            out.push(x2c(input[i + 2], input[i + 3]));
            i += 4;
        } else if (b'0'..=b'7').contains(&c) {
            let mut j = 1;
            while j < 4 && i + j < n && (b'0'..=b'7').contains(&input[i + j]) {
                j += 1;
            }
            let v = input[i + 1..i + j]
                .iter()
                .fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += j;
        } else {
            out.push(b'\\');
            out.push(c);
            i += 2;
        }
    }
}

fn sql_hex_decode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] == b'0'
            && i + 3 < n
            && (input[i + 1] | 0x20) == b'x'
            && input[i + 2].is_ascii_hexdigit()
            && input[i + 3].is_ascii_hexdigit()
        {
            i += 2;
            while i + 1 < n && input[i].is_ascii_hexdigit() && input[i + 1].is_ascii_hexdigit() {
                out.push(x2c(input[i], input[i + 1]));
                i += 2;
            }
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tr: Transform, s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if tr.apply(s, &mut out) {
            out
        } else {
            s.to_vec()
        }
    }

    /// Every transformation with triggers leaves values without them unchanged.
    #[test]
    fn triggers_are_exact_enough() {
        use Transform::*;
        let all = [
            Lowercase,
            Uppercase,
            UrlDecode,
            UrlDecodeUni,
            UrlEncode,
            HtmlEntityDecode,
            JsDecode,
            CssDecode,
            CmdLine,
            CompressWhitespace,
            RemoveWhitespace,
            RemoveNulls,
            ReplaceNulls,
            RemoveComments,
            RemoveCommentsChar,
            ReplaceComments,
            Base64Decode,
            Base64DecodeExt,
            Base64Encode,
            HexDecode,
            HexEncode,
            Utf8ToUnicode,
            NormalizePath,
            NormalizePathWin,
            Sha1,
            Md5,
            Length,
            Trim,
            TrimLeft,
            TrimRight,
            EscapeSeqDecode,
            SqlHexDecode,
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for tr in all {
            let Some(trig) = tr.triggers() else { continue };
            let allowed: Vec<u8> = (0..=255u8)
                .filter(|b| trig[usize::from(b >> 6)] & (1u64 << (b & 63)) == 0)
                .collect();
            for _ in 0..2000 {
                let len = (next() % 24) as usize;
                let input: Vec<u8> = (0..len)
                    .map(|_| allowed[(next() % allowed.len() as u64) as usize])
                    .collect();
                assert_eq!(t(tr, &input), input, "{tr:?} changed {input:?}");
            }
        }
    }

    #[test]
    fn url_decoding() {
        assert_eq!(t(Transform::UrlDecode, b"a%20b+c%zz%4"), b"a b c%zz%4");
        assert_eq!(t(Transform::UrlDecodeUni, b"%u0041%uff0e%u12"), b"A.%u12");
    }

    #[test]
    fn html_entities() {
        assert_eq!(
            t(Transform::HtmlEntityDecode, b"&lt;a&#x41;&#66;&quot&foo;"),
            b"<aAB\"&foo;"
        );
    }

    #[test]
    fn js_and_css() {
        assert_eq!(
            t(Transform::JsDecode, br"\x41\u0042\103\n\z"),
            b"ABC\nz".to_vec()
        );
        assert_eq!(t(Transform::CssDecode, br"\41 b\\\'"), b"Ab\\'".to_vec());
    }

    #[test]
    fn cmdline() {
        assert_eq!(
            t(Transform::CmdLine, b"C^a\"t  /etc/pass'wd ; ID"),
            b"cat/etc/passwd id"
        );
    }

    #[test]
    fn whitespace_and_comments() {
        assert_eq!(t(Transform::CompressWhitespace, b"a \t\n b"), b"a b");
        assert_eq!(t(Transform::RemoveWhitespace, b"a \t\n b"), b"ab");
        assert_eq!(t(Transform::ReplaceComments, b"a/*x*/b/*c"), b"a b ");
        assert_eq!(t(Transform::RemoveCommentsChar, b"a/*b*/--#c"), b"abc");
    }

    #[test]
    fn paths() {
        assert_eq!(t(Transform::NormalizePath, b"/a/./b/../c//d"), b"/a/c/d");
        assert_eq!(t(Transform::NormalizePathWin, b"\\a\\..\\b\\"), b"/b/");
        assert_eq!(
            t(Transform::NormalizePath, b"../../etc/passwd"),
            b"../../etc/passwd"
        );
    }

    #[test]
    fn base64_and_hex() {
        assert_eq!(t(Transform::Base64Decode, b"aGVsbG8="), b"hello");
        assert_eq!(t(Transform::Base64DecodeExt, b"aGV.sbG8"), b"hello");
        assert_eq!(t(Transform::HexEncode, b"\x01\xff"), b"01ff");
        assert_eq!(t(Transform::HexDecode, b"4142"), b"AB");
        assert_eq!(t(Transform::Base64Encode, b"hi"), b"aGk=");
    }

    #[test]
    fn unicode() {
        assert_eq!(t(Transform::Utf8ToUnicode, "aé".as_bytes()), b"a%u00e9");
    }

    #[test]
    fn misc() {
        assert_eq!(t(Transform::Length, b"abc"), b"3");
        assert_eq!(t(Transform::Trim, b"  a  "), b"a");
        assert_eq!(t(Transform::EscapeSeqDecode, br"\x41\n\101"), b"A\nA");
        assert_eq!(t(Transform::RemoveNulls, b"a\0b"), b"ab");
        assert_eq!(t(Transform::Sha1, b"").len(), 20);
    }
}
