//! The port against libinjection 3.9.2's own answers: `tests/data/differential.txt` holds
//! ~20k inputs (every string in the CRS regression corpus, decoded, plus generated SQL/HTML
//! fragment soups, mutations and random bytes) with what the C library returned for each.
//! `gen/difftest.sh` regenerates it and runs millions more inputs against the C library.

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            if b[i + 1] == b'\\' {
                out.push(b'\\');
                i += 2;
                continue;
            }
            if b[i + 1] == b'x'
                && i + 3 < b.len()
                && let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16)
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[test]
fn matches_libinjection_3_9_2() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/differential.txt"
    ))
    .expect("tests/data/differential.txt");
    let (mut total, mut sqli, mut xss) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (expected, input) = line.split_once('\t').expect("expected<TAB>input");
        let input = unescape(input);
        let got_sqli = tandem_injection::detect_sqli(&input);
        let got_xss = tandem_injection::detect_xss(&input);
        let got = match got_sqli {
            Some(fp) => format!("1 {} {}", fp, u8::from(got_xss)),
            None => format!("0 - {}", u8::from(got_xss)),
        };
        total += 1;
        sqli += usize::from(got_sqli.is_some());
        xss += usize::from(got_xss);
        if got != expected {
            failures.push(format!("{input:?}: got {got}, libinjection {expected}"));
        }
    }
    println!(
        "differential: {total} inputs ({sqli} SQLi, {xss} XSS), {} differ",
        failures.len()
    );
    assert!(total > 20_000);
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(50)].join("\n")
    );
}
