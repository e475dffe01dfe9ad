//! libinjection's XSS detector (`libinjection_xss.c`): run the HTML5 tokenizer from each of
//! five starting states and flag doctypes, black-listed tags, event-handler and other
//! dangerous attributes, URL attributes whose value (after HTML entity decoding) starts
//! with `javascript:`, `vbscript:`, `data:` or `view-source:`, and IE-specific comments.

pub(crate) mod html5;

use html5::{Html5, Start, TokenType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    None,
    /// Always dangerous.
    Black,
    /// The value is a URL.
    Url,
    /// Inline style.
    Style,
    /// The value names another attribute (SVG `attributeName`).
    Indirect,
}

/// Attributes with their kind (`BLACKATTR`), compared whole.
const BLACK_ATTR: &[(&[u8], Attr)] = &[
    (b"ACTION", Attr::Url),
    (b"ATTRIBUTENAME", Attr::Indirect),
    (b"BY", Attr::Url),
    (b"BACKGROUND", Attr::Url),
    (b"DATAFORMATAS", Attr::Black),
    (b"DATASRC", Attr::Black),
    (b"DYNSRC", Attr::Url),
    (b"FILTER", Attr::Style),
    (b"FORMACTION", Attr::Url),
    (b"FOLDER", Attr::Url),
    (b"FROM", Attr::Url),
    (b"HANDLER", Attr::Url),
    (b"HREF", Attr::Url),
    (b"LOWSRC", Attr::Url),
    (b"POSTER", Attr::Url),
    (b"SRC", Attr::Url),
    (b"STYLE", Attr::Style),
    (b"TO", Attr::Url),
    (b"VALUES", Attr::Url),
    (b"XLINK:HREF", Attr::Url),
];

/// Tags that are always dangerous (`BLACKTAG`), compared whole; anything starting with
/// `svg` or `xsl` is too.
const BLACK_TAG: &[&[u8]] = &[
    b"APPLET",
    b"BASE",
    b"COMMENT",
    b"EMBED",
    b"FRAME",
    b"FRAMESET",
    b"HANDLER",
    b"IFRAME",
    b"IMPORT",
    b"ISINDEX",
    b"LINK",
    b"LISTENER",
    b"META",
    b"NOSCRIPT",
    b"OBJECT",
    b"SCRIPT",
    b"STYLE",
    b"VMLFRAME",
    b"XML",
    b"XSS",
];

/// Event-handler attributes (`BLACK_ON_ATTR`), matched as prefixes of the name.
const BLACK_ON_ATTR: &[&[u8]] = &[
    b"ONSTART",
    b"ONERROR",
    b"ONCLICK",
    b"ONMOUSEDOWN",
    b"ONMOUSEENTER",
    b"ONMOUSELEAVE",
    b"ONMOUSEMOVE",
    b"ONMOUSEOUT",
    b"ONMOUSEOVER",
    b"ONMOUSEUP",
    b"ONMOUSEWHEEL",
    b"ONPROPERTYCHANGE",
    b"ONFORMCHANGE",
    b"ONFORMINPUT",
    b"ONABORT",
    b"ONREADYSTATECHANGE",
    b"ONACTIVATE",
    b"ONBEFOREACTIVATE",
    b"ONAFTERPRINT",
    b"ONBEFOREPRINT",
    b"ONBEFOREUNLOAD",
    b"ONBLUR",
    b"ONCANPLAY",
    b"ONCANPLAYTHROUGH",
    b"ONCHANGE",
    b"ONCONTEXTMENU",
    b"ONCOPY",
    b"ONCUT",
    b"ONDBLCLICK",
    b"ONDRAG",
    b"ONDRAGEND",
    b"ONDRAGENTER",
    b"ONDRAGLEAVE",
    b"ONDRAGOVER",
    b"ONDRAGSTART",
    b"ONDROP",
    b"ONDURATIONCHANGE",
    b"ONEMPTIED",
    b"ONENDED",
    b"ONFOCUS",
    b"ONFOCUSIN",
    b"ONFOCUSOUT",
    b"ONHASHCHANGE",
    b"ONINPUT",
    b"ONINVALID",
    b"ONKEYDOWN",
    b"ONKEYPRESS",
    b"ONKEYUP",
    b"ONLOAD",
    b"ONLOADEDDATA",
    b"ONLOADEDMETADATA",
    b"ONLOADSTART",
    b"ONMESSAGE",
    b"ONOFFLINE",
    b"ONONLINE",
    b"ONOPEN",
    b"ONPAGEHIDE",
    b"ONPAGESHOW",
    b"ONPASTE",
    b"ONPAUSE",
    b"ONPLAY",
    b"ONPLAYING",
    b"ONPOPSTATE",
    b"ONPROGRESS",
    b"ONRATECHANGE",
    b"ONRESET",
    b"ONRESIZE",
    b"ONSCROLL",
    b"ONSEARCH",
    b"ONSEEKED",
    b"ONSEEKING",
    b"ONSELECT",
    b"ONSHOW",
    b"ONSTALLED",
    b"ONSTORAGE",
    b"ONSUBMIT",
    b"ONSUSPEND",
    b"ONTIMEUPDATE",
    b"ONTOGGLE",
    b"ONTOUCHCANCEL",
    b"ONTOUCHEND",
    b"ONTOUCHMOVE",
    b"ONTOUCHSTART",
    b"ONUNLOAD",
    b"ONVOLUMECHANGE",
    b"ONWAITING",
    b"ONWHEEL",
];

/// `cstrcasecmp_with_null(upper, window, n) == 0`: compare `upper` with the first `n`
/// bytes of `window`, upper-casing a-z and skipping NUL bytes in `window`; equal only if
/// all of `upper` was consumed. Bytes of `n` beyond the window (libinjection reads past
/// the token, and sometimes past the input) count as a mismatch.
fn eq_with_null(upper: &[u8], window: &[u8], n: usize) -> bool {
    let mut ai = 0;
    for i in 0..n {
        let Some(&cb) = window.get(i) else {
            return false;
        };
        if cb == 0 {
            continue;
        }
        let ca = upper.get(ai).copied().unwrap_or(0);
        ai += 1;
        if ca != cb.to_ascii_uppercase() {
            return false;
        }
    }
    ai == upper.len()
}

/// `html_decode_char_at`: one possibly entity-encoded character at the start of `src`
/// (numeric entities only; other `&` stay `&`). `len` is how many bytes belong to the
/// value; `src` may extend beyond it (quirk: libinjection reads `&#` digits past the end
/// of the value). Returns the character and the bytes consumed.
fn html_decode_char_at(src: &[u8], len: usize) -> (i32, usize) {
    let at = |i: usize| src.get(i).copied().unwrap_or(0);
    if len == 0 {
        return (-1, 0);
    }
    if at(0) != b'&' || len < 2 {
        return (i32::from(at(0)), 1);
    }
    if at(1) != b'#' {
        return (i32::from(b'&'), 1);
    }
    if at(2) == b'x' || at(2) == b'X' {
        let Some(first) = (at(3) as char).to_digit(16) else {
            return (i32::from(b'&'), 1);
        };
        let mut val = first as i32;
        let mut i = 4;
        while i < len {
            let ch = at(i);
            if ch == b';' {
                return (val, i + 1);
            }
            let Some(d) = (ch as char).to_digit(16) else {
                return (val, i);
            };
            val = val * 16 + d as i32;
            if val > 0x0010_00FF {
                return (i32::from(b'&'), 1);
            }
            i += 1;
        }
        (val, i)
    } else {
        let ch = at(2);
        if !ch.is_ascii_digit() {
            return (i32::from(b'&'), 1);
        }
        let mut val = i32::from(ch - b'0');
        let mut i = 3;
        while i < len {
            let ch = at(i);
            if ch == b';' {
                return (val, i + 1);
            }
            if !ch.is_ascii_digit() {
                return (val, i);
            }
            val = val * 10 + i32::from(ch - b'0');
            if val > 0x0010_00FF {
                return (i32::from(b'&'), 1);
            }
            i += 1;
        }
        (val, i)
    }
}

/// `htmlencode_startswith`: does the entity-decoded value start with `prefix` (upper case),
/// ignoring leading control characters and white space, NULs and newlines.
fn htmlencode_startswith(prefix: &[u8], value: &[u8], len: usize) -> bool {
    let mut ai = 0;
    let mut off = 0;
    let mut n = len;
    let mut first = true;
    while n > 0 {
        if ai == prefix.len() {
            return true;
        }
        let (mut cb, consumed) = html_decode_char_at(&value[off.min(value.len())..], n);
        off += consumed;
        // quirk: libinjection can consume more than is left (a "&#1" at the very end);
        // its size_t wraps around and it reads on past the value. We stop instead.
        n = n.saturating_sub(consumed);
        if first && cb <= 32 {
            continue;
        }
        first = false;
        if cb == 0 || cb == 10 {
            continue;
        }
        if (i32::from(b'a')..=i32::from(b'z')).contains(&cb) {
            cb -= 0x20;
        }
        // quirk: compared as a C char, so only the low byte of the code point counts.
        if prefix[ai] != cb as u8 {
            return false;
        }
        ai += 1;
    }
    ai == prefix.len()
}

fn is_black_tag(name: &[u8]) -> bool {
    if name.len() < 3 {
        return false;
    }
    let has_nul = name.contains(&0);
    if BLACK_TAG.iter().any(|t| same_name(t, name, has_nul)) {
        return true;
    }
    let p = |i: usize| name[i].to_ascii_lowercase();
    (p(0) == b's' && p(1) == b'v' && p(2) == b'g') || (p(0) == b'x' && p(1) == b's' && p(2) == b'l')
}

/// `is_black_attr`. `window` is the name followed by the rest of the input, because the
/// `on*` comparison reads as many bytes as the event name has.
fn is_black_attr(name: &[u8], window: &[u8]) -> Attr {
    let len = name.len();
    if len < 2 {
        return Attr::None;
    }
    if name[..2].eq_ignore_ascii_case(b"on")
        && BLACK_ON_ATTR
            .iter()
            .any(|on| eq_with_null(on, window, on.len()))
    {
        return Attr::Black;
    }
    if len >= 5 && (eq_with_null(b"XMLNS", name, 5) || eq_with_null(b"XLINK", name, 5)) {
        return Attr::Black;
    }
    let has_nul = name.contains(&0);
    BLACK_ATTR
        .iter()
        .find(|(attr, _)| same_name(attr, name, has_nul))
        .map_or(Attr::None, |&(_, kind)| kind)
}

/// `cstrcasecmp_with_null(upper, name, len) == 0`. Names without NUL (nearly all) take
/// the fast path: equal length, then a case-insensitive compare.
fn same_name(upper: &[u8], name: &[u8], has_nul: bool) -> bool {
    if has_nul {
        eq_with_null(upper, name, name.len())
    } else {
        upper.len() == name.len() && upper.eq_ignore_ascii_case(name)
    }
}

/// `is_black_url`: after leading white space, control and non-ASCII bytes, does the value
/// start with `data`, `view-source`, `java` or `vbscript` (entity-decoded).
fn is_black_url(value: &[u8], window: &[u8]) -> bool {
    let skip = value.iter().take_while(|&&b| b <= 32 || b >= 127).count();
    let value_len = value.len() - skip;
    let window = &window[skip..];
    [b"DATA".as_slice(), b"VIEW-SOURCE", b"JAVA", b"VBSCRIPT"]
        .iter()
        .any(|p| htmlencode_startswith(p, window, value_len))
}

/// `libinjection_is_xss` for one starting state.
fn is_xss(input: &[u8], start: Start) -> bool {
    let mut h5 = Html5::new(input, start);
    let mut attr = Attr::None;
    while h5.next() {
        if h5.token_type != TokenType::AttrValue {
            attr = Attr::None;
        }
        let token = h5.token();
        match h5.token_type {
            TokenType::Doctype => return true,
            TokenType::TagNameOpen if is_black_tag(token) => return true,
            TokenType::AttrName => attr = is_black_attr(token, h5.rest_from_token()),
            TokenType::AttrValue => {
                match attr {
                    Attr::None => {}
                    Attr::Black | Attr::Style => return true,
                    Attr::Url => {
                        if is_black_url(token, h5.rest_from_token()) {
                            return true;
                        }
                    }
                    Attr::Indirect => {
                        if is_black_attr(token, h5.rest_from_token()) != Attr::None {
                            return true;
                        }
                    }
                }
                attr = Attr::None;
            }
            TokenType::TagComment => {
                // IE treats "`" as a tag end.
                if token.contains(&b'`') {
                    return true;
                }
                if token.len() > 3 {
                    // IE conditional comments and XML processing instructions.
                    if token[0] == b'['
                        && token[1].eq_ignore_ascii_case(&b'i')
                        && token[2].eq_ignore_ascii_case(&b'f')
                    {
                        return true;
                    }
                    if token[..3].eq_ignore_ascii_case(b"xml") {
                        return true;
                    }
                }
                if token.len() > 5
                    && (eq_with_null(b"IMPORT", token, 6) || eq_with_null(b"ENTITY", token, 6))
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// `libinjection_xss`: text, then inside an unquoted, single-, double- and back-quoted
/// attribute value.
///
/// Input with neither `<` nor `=` is never XSS, and most values (header values, numbers,
/// words) have neither, so they are answered without running the tokenizer five times:
/// every token [`is_xss`] acts on needs one of them. `Doctype`, `TagNameOpen` and
/// `TagComment` are only produced after a `<` (the data state looks for one; the tag and
/// comment states are entered from there). An `AttrValue` that can be refused must follow an
/// `AttrName` directly, and the tokenizer only goes from a name to a value through
/// `BeforeAttributeValue`, entered on `=`; the one `AttrValue` that needs neither, the
/// first token of a quoted start, has no attribute name before it. The test
/// `the_shortcut_changes_no_answer` checks the full path on generated input.
pub(crate) fn detect(input: &[u8]) -> bool {
    if !input.iter().any(|&b| b == b'<' || b == b'=') {
        return false;
    }
    detect_full(input)
}

fn detect_full(input: &[u8]) -> bool {
    [
        Start::Data,
        Start::ValueNoQuote,
        Start::ValueSingleQuote,
        Start::ValueDoubleQuote,
        Start::ValueBackQuote,
    ]
    .into_iter()
    .any(|start| is_xss(input, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input without `<` and `=`, made of the bytes the tokenizer and the blacklists care
    /// about, is never XSS on the full path either.
    #[test]
    fn the_shortcut_changes_no_answer() {
        const BYTES: &[u8] =
            b" \t\n\x0b\x0c\r\0/>\"'`!-%?&#;:xXsSoOnNlLaAdDeErRtTvVjJcCpPiImMyY()[]\xff\x80";
        let words: [&[u8]; 12] = [
            b"onerror",
            b"onload",
            b"style",
            b"href",
            b"javascript:",
            b"data:",
            b"xmlns",
            b"vbscript",
            b"src",
            b"&#106;",
            b"script",
            b"import",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut checked = 0;
        for _ in 0..200_000 {
            let len = (next() % 24) as usize;
            let mut v = Vec::with_capacity(len + 16);
            while v.len() < len {
                let r = next();
                if r % 5 == 0 {
                    v.extend_from_slice(words[(r >> 8) as usize % words.len()]);
                } else {
                    v.push(BYTES[(r >> 8) as usize % BYTES.len()]);
                }
            }
            assert!(!detect_full(&v), "{:?}", String::from_utf8_lossy(&v));
            checked += 1;
        }
        assert_eq!(checked, 200_000);
        // And the full path does find XSS as soon as one of the two is there.
        assert!(detect(b" onerror=alert(1)"));
        assert!(detect(b"<script>"));
        assert!(detect(b"x\" onmouseover=alert(1) \""));
    }

    #[test]
    fn entity_decoding() {
        assert_eq!(html_decode_char_at(b"&#106;", 6), (106, 6));
        assert_eq!(html_decode_char_at(b"&#x6A;", 6), (0x6a, 6));
        assert_eq!(html_decode_char_at(b"&#x6Ax", 6), (0x6a, 5));
        assert_eq!(html_decode_char_at(b"&amp;", 5), (i32::from(b'&'), 1));
        assert_eq!(html_decode_char_at(b"a", 1), (i32::from(b'a'), 1));
    }

    #[test]
    fn url_prefixes() {
        assert!(is_black_url(
            b" javascript:alert(1)",
            b" javascript:alert(1)"
        ));
        assert!(is_black_url(b"&#106;avascript:", b"&#106;avascript:"));
        assert!(is_black_url(b"ja\0va", b"ja\0va"));
        assert!(!is_black_url(
            b"https://example.com",
            b"https://example.com"
        ));
    }

    #[test]
    fn attributes() {
        assert_eq!(is_black_attr(b"onerror", b"onerror=x"), Attr::Black);
        assert_eq!(is_black_attr(b"onerrorx", b"onerrorx=x"), Attr::Black);
        assert_eq!(is_black_attr(b"onx", b"onx=x"), Attr::None);
        assert_eq!(is_black_attr(b"HREF", b"HREF=x"), Attr::Url);
        assert_eq!(is_black_attr(b"xmlns:x", b"xmlns:x=y"), Attr::Black);
    }
}
