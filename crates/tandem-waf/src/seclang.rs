//! SecLang text into directives: pure functions over text, no rule semantics.
//!
//! The syntax is Apache's configuration syntax as ModSecurity uses it: one directive per
//! line, a trailing backslash continues the line, `#` starts a comment line, arguments are
//! separated by whitespace and may be quoted with `"` or `'` (inside quotes only a backslash
//! before the quote character is an escape; every other backslash is kept, so regular
//! expressions survive unchanged). On top of that come the three small languages inside a
//! `SecRule`: the variable list (`ARGS|!ARGS:foo|&TX:x|REQUEST_COOKIES:/^_ga/`), the
//! operator (`!@rx ...`) and the action list (`id:1,phase:2,msg:'a, b'`).

use crate::error::ParseError;

/// One directive with its arguments, unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The directive name as written (`SecRule`).
    pub name: String,
    /// Arguments, with quotes removed.
    pub args: Vec<String>,
    /// Line of the directive's first line (1-based).
    pub line: usize,
}

/// Split configuration text into directives. Comment and blank lines are dropped.
pub fn split_directives(text: &str) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if logical.is_empty() {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            start_line = line_no;
        }
        if let Some(body) = line.strip_suffix('\\') {
            logical.push_str(body);
            continue;
        }
        logical.push_str(line);
        let d = parse_line(&logical, start_line)?;
        if let Some(d) = d {
            out.push(d);
        }
        logical.clear();
    }
    if !logical.is_empty()
        && let Some(d) = parse_line(&logical, start_line)?
    {
        out.push(d);
    }
    Ok(out)
}

fn parse_line(line: &str, line_no: usize) -> Result<Option<Directive>, ParseError> {
    let words = split_words(line).map_err(|message| ParseError {
        line: line_no,
        message,
    })?;
    let mut it = words.into_iter();
    let Some(name) = it.next() else {
        return Ok(None);
    };
    Ok(Some(Directive {
        name,
        args: it.collect(),
        line: line_no,
    }))
}

/// Apache's `ap_getword_conf`: whitespace-separated words, `"` or `'` quoting, and only
/// `\<quote>` unescaped inside quotes.
pub(crate) fn split_words(line: &str) -> Result<Vec<String>, String> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let q = b[i];
        if q == b'"' || q == b'\'' {
            i += 1;
            let mut w = Vec::new();
            let mut closed = false;
            while i < b.len() {
                if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] == q {
                    w.push(q);
                    i += 2;
                } else if b[i] == q {
                    closed = true;
                    i += 1;
                    break;
                } else {
                    w.push(b[i]);
                    i += 1;
                }
            }
            if !closed {
                return Err(format!(
                    "unterminated {} quote; close the argument with a matching quote",
                    q as char
                ));
            }
            out.push(String::from_utf8_lossy(&w).into_owned());
        } else {
            let s = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push(line[s..i].to_string());
        }
    }
    Ok(out)
}

/// A variable selector as written: `ARGS:foo`, `!REQUEST_HEADERS:/^x-/`, `&TX:score`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawVar {
    /// `&`: count instead of values.
    pub count: bool,
    /// `!`: exclude from the list.
    pub exclude: bool,
    /// Variable or collection name, upper case.
    pub name: String,
    /// The key after `:`, if any.
    pub key: Option<RawKey>,
}

/// A collection key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawKey {
    /// A literal key (matched case-insensitively).
    Name(String),
    /// `/regex/`.
    Regex(String),
}

/// Parse a `SecRule` variable list.
pub fn parse_variables(s: &str) -> Result<Vec<RawVar>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        while i < b.len() && (b[i] == b'|' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let mut count = false;
        let mut exclude = false;
        loop {
            match b.get(i) {
                Some(b'&') => {
                    count = true;
                    i += 1;
                }
                Some(b'!') => {
                    exclude = true;
                    i += 1;
                }
                _ => break,
            }
        }
        let ns = i;
        while i < b.len() && b[i] != b':' && b[i] != b'|' {
            i += 1;
        }
        let name = s[ns..i].trim().to_ascii_uppercase();
        if name.is_empty() {
            return Err(format!("empty variable name in {s:?}"));
        }
        let mut key = None;
        if i < b.len() && b[i] == b':' {
            i += 1;
            if name == "XML" {
                // An XPath expression: up to the next `|`.
                let ks = i;
                while i < b.len() && b[i] != b'|' {
                    i += 1;
                }
                key = Some(RawKey::Name(s[ks..i].to_string()));
            } else if i < b.len() && b[i] == b'/' {
                i += 1;
                let ks = i;
                let mut closed = false;
                while i < b.len() {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'/' && (i + 1 == b.len() || b[i + 1] == b'|') {
                        closed = true;
                        break;
                    }
                    i += 1;
                }
                if !closed {
                    return Err(format!(
                        "unterminated regular expression key in {s:?}; end it with '/'"
                    ));
                }
                key = Some(RawKey::Regex(s[ks..i].to_string()));
                i += 1;
            } else if i < b.len() && b[i] == b'\'' {
                i += 1;
                let ks = i;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                let k = s[ks..i.min(b.len())].to_string();
                i += 1;
                key = Some(if k.starts_with('/') && k.ends_with('/') && k.len() >= 2 {
                    RawKey::Regex(k[1..k.len() - 1].to_string())
                } else {
                    RawKey::Name(k)
                });
            } else {
                let ks = i;
                while i < b.len() && b[i] != b'|' {
                    i += 1;
                }
                key = Some(RawKey::Name(s[ks..i].to_string()));
            }
        }
        out.push(RawVar {
            count,
            exclude,
            name,
            key,
        });
    }
    if out.is_empty() {
        return Err("the rule has no variables".into());
    }
    Ok(out)
}

/// An operator as written: `!@rx pattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOperator {
    /// `!` before the operator.
    pub negated: bool,
    /// Operator name without `@`, lower case; `rx` when the operator was implicit.
    pub name: String,
    /// Its argument (may be empty).
    pub arg: String,
}

/// Parse a `SecRule` operator.
pub fn parse_operator(s: &str) -> RawOperator {
    let mut t = s.trim_start();
    let mut negated = false;
    if let Some(r) = t.strip_prefix('!') {
        negated = true;
        t = r.trim_start();
    }
    if let Some(r) = t.strip_prefix('@') {
        let (name, arg) = match r.find(|c: char| c.is_ascii_whitespace()) {
            Some(p) => (&r[..p], r[p..].trim_start()),
            None => (r, ""),
        };
        RawOperator {
            negated,
            name: name.to_ascii_lowercase(),
            arg: arg.to_string(),
        }
    } else {
        RawOperator {
            negated,
            name: "rx".into(),
            arg: t.to_string(),
        }
    }
}

/// Parse an action list into `(name, value)` pairs, names lower-cased.
pub fn parse_actions(s: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ns = i;
        while i < b.len() && b[i] != b':' && b[i] != b',' {
            i += 1;
        }
        let name = s[ns..i].trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(format!("empty action name in {s:?}"));
        }
        if i < b.len() && b[i] == b':' {
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i < b.len() && b[i] == b'\'' {
                i += 1;
                let mut v = Vec::new();
                let mut closed = false;
                while i < b.len() {
                    if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] == b'\'' {
                        v.push(b'\'');
                        i += 2;
                    } else if b[i] == b'\'' {
                        closed = true;
                        i += 1;
                        break;
                    } else {
                        v.push(b[i]);
                        i += 1;
                    }
                }
                if !closed {
                    return Err(format!(
                        "action {name}: unterminated single quote; close the value with '"
                    ));
                }
                out.push((name, Some(String::from_utf8_lossy(&v).into_owned())));
            } else {
                let vs = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                out.push((name, Some(s[vs..i].trim_end().to_string())));
            }
        } else {
            out.push((name, None));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_and_quotes() {
        let text = "# comment\nSecRule ARGS \"@rx a\\\"b\" \\\n    \"id:1,\\\n    phase:2\"\n\nSecMarker END\n";
        let d = split_directives(text).expect("parses");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "SecRule");
        assert_eq!(d[0].args[1], "@rx a\"b");
        assert_eq!(d[0].args[2], "id:1,    phase:2");
        assert_eq!(d[0].line, 2);
        assert_eq!(d[1].args, vec!["END"]);
        assert_eq!(d[1].line, 6);
    }

    #[test]
    fn backslashes_survive() {
        let d = split_directives(r#"SecRule ARGS "@rx \d+\x5c" "id:1""#).expect("parses");
        assert_eq!(d[0].args[1], r"@rx \d+\x5c");
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        assert!(split_directives("SecRule ARGS \"@rx a").is_err());
    }

    #[test]
    fn variables() {
        let v = parse_variables("REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|&TX:x|XML:/*|ARGS:'a|b'|REQUEST_HEADERS:/^(?:a|b)$/")
            .expect("parses");
        assert_eq!(v.len(), 6);
        assert!(v[1].exclude);
        assert_eq!(v[1].key, Some(RawKey::Regex("__utm".into())));
        assert!(v[2].count);
        assert_eq!(v[3].key, Some(RawKey::Name("/*".into())));
        assert_eq!(v[4].key, Some(RawKey::Name("a|b".into())));
        assert_eq!(v[5].key, Some(RawKey::Regex("^(?:a|b)$".into())));
    }

    #[test]
    fn operators() {
        assert_eq!(
            parse_operator("!@within GET POST"),
            RawOperator {
                negated: true,
                name: "within".into(),
                arg: "GET POST".into()
            }
        );
        assert_eq!(parse_operator("^foo$").name, "rx");
        assert_eq!(parse_operator("@unconditionalMatch").arg, "");
    }

    #[test]
    fn actions() {
        let a = parse_actions(
            "id:1, phase:2,msg:'a, b \\'c\\'',t:none,t:lowercase,block, setvar:'tx.x=+%{tx.y}'",
        )
        .expect("parses");
        assert_eq!(a[2], ("msg".into(), Some("a, b 'c'".into())));
        assert_eq!(a[3], ("t".into(), Some("none".into())));
        assert_eq!(a[5], ("block".into(), None));
        assert_eq!(a[6].1.as_deref(), Some("tx.x=+%{tx.y}"));
    }
}
