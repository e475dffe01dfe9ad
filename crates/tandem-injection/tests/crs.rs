//! The CRS regression tests of the libinjection rules: 941100 and 941101 (`@detectXSS`),
//! 942100 and 942101 (`@detectSQLi`). `tests/data/crs-cases.txt` (from
//! `gen/crs_cases.py`) lists each test's inspected values as ModSecurity's request parser
//! hands them over; here we apply the rule's transformation chain and expect the operator
//! to match some value of a test exactly when the test expects the rule to fire.
//!
//! The transformations are small re-implementations for this test only (the WAF has the
//! real ones): `utf8toUnicode` followed by `urlDecodeUni` leaves non-ASCII bytes as they
//! are, which is what the pair does to the ASCII payloads in these tests.

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Maps a decoded code point to a byte as ModSecurity does: full-width ASCII to ASCII,
/// anything else to its low byte.
fn unicode_byte(c: u32) -> u8 {
    if (0xff01..=0xff5e).contains(&c) {
        (c - 0xfee0) as u8
    } else {
        (c & 0xff) as u8
    }
}

fn url_decode_uni(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' if i + 5 < s.len() && (s[i + 1] | 0x20) == b'u' => {
                let digits: Option<Vec<u8>> = s[i + 2..i + 6].iter().map(|&b| hex(b)).collect();
                match digits {
                    Some(d) => {
                        let c = d.iter().fold(0u32, |v, &x| v * 16 + u32::from(x));
                        out.push(unicode_byte(c));
                        i += 6;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'%' if i + 2 < s.len() && hex(s[i + 1]).is_some() && hex(s[i + 2]).is_some() => {
                out.push(hex(s[i + 1]).unwrap_or(0) * 16 + hex(s[i + 2]).unwrap_or(0));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn html_entity_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    'outer: while i < s.len() {
        if s[i] == b'&' {
            let rest = &s[i + 1..];
            if rest.first() == Some(&b'#') {
                let (radix, start) = if matches!(rest.get(1), Some(b'x' | b'X')) {
                    (16, 2)
                } else {
                    (10, 1)
                };
                let n = rest[start..]
                    .iter()
                    .take_while(|&&b| (b as char).is_digit(radix))
                    .count();
                if n > 0 {
                    let digits = std::str::from_utf8(&rest[start..start + n]).unwrap_or("0");
                    let c = u32::from_str_radix(digits, radix).unwrap_or(0);
                    out.push((c & 0xff) as u8);
                    i += 1 + start + n;
                    if s.get(i) == Some(&b';') {
                        i += 1;
                    }
                    continue;
                }
            } else {
                for (name, val) in [
                    ("quot", b'"'),
                    ("amp", b'&'),
                    ("lt", b'<'),
                    ("gt", b'>'),
                    ("nbsp", 0xa0),
                ] {
                    if rest.len() >= name.len()
                        && rest[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                    {
                        out.push(val);
                        i += 1 + name.len();
                        if s.get(i) == Some(&b';') {
                            i += 1;
                        }
                        continue 'outer;
                    }
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn js_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            let n = s[i + 1];
            if (n | 0x20) == b'u'
                && i + 5 < s.len()
                && s[i + 2..i + 6].iter().all(|&b| hex(b).is_some())
            {
                let c = s[i + 2..i + 6]
                    .iter()
                    .fold(0u32, |v, &b| v * 16 + u32::from(hex(b).unwrap_or(0)));
                out.push(unicode_byte(c));
                i += 6;
                continue;
            }
            if (n | 0x20) == b'x'
                && i + 3 < s.len()
                && hex(s[i + 2]).is_some()
                && hex(s[i + 3]).is_some()
            {
                out.push(hex(s[i + 2]).unwrap_or(0) * 16 + hex(s[i + 3]).unwrap_or(0));
                i += 4;
                continue;
            }
            out.push(match n {
                b'a' => 7,
                b'b' => 8,
                b'f' => 12,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'v' => 11,
                c => c,
            });
            i += 2;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn css_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            let n = s[i + 1..]
                .iter()
                .take(6)
                .take_while(|&&b| hex(b).is_some())
                .count();
            if n > 0 {
                let c = s[i + 1..i + 1 + n]
                    .iter()
                    .fold(0u32, |v, &b| v * 16 + u32::from(hex(b).unwrap_or(0)));
                out.push(unicode_byte(c));
                i += 1 + n;
                if s.get(i) == Some(&b' ') {
                    i += 1;
                }
                continue;
            }
            if s[i + 1] == b'\n' {
                i += 2;
                continue;
            }
            out.push(s[i + 1]);
            i += 2;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn remove_nulls(s: &[u8]) -> Vec<u8> {
    s.iter().copied().filter(|&b| b != 0).collect()
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len() {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap_or(0));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn fires(rule: u32, value: &[u8]) -> bool {
    match rule {
        // t:none,t:utf8toUnicode,t:urlDecodeUni,t:htmlEntityDecode,t:jsDecode,t:cssDecode,t:removeNulls
        941100 | 941101 => {
            let v = remove_nulls(&css_decode(&js_decode(&html_entity_decode(
                &url_decode_uni(value),
            ))));
            tandem_injection::detect_xss(&v)
        }
        // t:none,t:utf8toUnicode,t:urlDecodeUni,t:removeNulls
        942100 | 942101 => {
            tandem_injection::detect_sqli(&remove_nulls(&url_decode_uni(value))).is_some()
        }
        _ => panic!("unexpected rule {rule}"),
    }
}

#[test]
fn crs_libinjection_rules() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/crs-cases.txt"
    ))
    .expect("tests/data/crs-cases.txt");
    // (rule, test) -> (expected, fired)
    let mut tests: std::collections::BTreeMap<(u32, u32), (bool, bool)> = Default::default();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.splitn(5, '\t').collect();
        assert_eq!(f.len(), 5, "malformed line {line:?}");
        let rule: u32 = f[0].parse().expect("rule id");
        let test: u32 = f[1].parse().expect("test id");
        let expect = f[2] == "1";
        let fired = f[3] != "-" && fires(rule, &unescape(f[4]));
        let e = tests.entry((rule, test)).or_insert((expect, false));
        e.1 |= fired;
    }
    let mut failed = Vec::new();
    for rule in [941100, 941101, 942100, 942101] {
        let of_rule: Vec<_> = tests.iter().filter(|((r, _), _)| *r == rule).collect();
        let passed = of_rule.iter().filter(|(_, (e, f))| e == f).count();
        println!("CRS {rule}: {passed}/{} tests pass", of_rule.len());
        for ((r, t), (e, f)) in of_rule {
            if e != f {
                failed.push(format!(
                    "{r}-{t}: expected {}, detection {}",
                    if *e { "match" } else { "no match" },
                    f
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
