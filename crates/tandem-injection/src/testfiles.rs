//! libinjection's own test files (`tests/test-{tokens,folding,sqli,html5}-*.txt`), run
//! through the same printing as libinjection's `testdriver.c`.
//!
//! The copies available to us come from assorted libinjection commits, older and newer
//! than 3.9.2, so their EXPECTED sections disagree with libinjection 3.9.2 itself on most
//! files. `expected-c-3.9.2.txt` holds what the C library's testdriver prints for each
//! file; the port must match that exactly, and we report how many stored expectations it
//! (and so the C library) meets.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/libinjection")
}

fn rtrim(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\n' | b'\t' | b'\r'))
        .map_or(0, |p| p + 1);
    &b[..end]
}

/// Splits a test file into (input, expected), as testdriver's `read_file` does.
fn parse(text: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let s = String::from_utf8_lossy(text);
    let rest = s.strip_prefix("--TEST--\n")?;
    let (_, rest) = rest.split_once("--INPUT--\n")?;
    let (input, expected) = rest.split_once("--EXPECTED--\n")?;
    Some((
        rtrim(input.as_bytes()).to_vec(),
        rtrim(expected.as_bytes()).to_vec(),
    ))
}

fn run(name: &str, input: &[u8]) -> Vec<u8> {
    let out = if name.starts_with("test-tokens-") {
        crate::sqli::debug::tokens(input)
    } else if name.starts_with("test-folding-") {
        crate::sqli::debug::folded(input)
    } else if name.starts_with("test-sqli-") {
        crate::detect_sqli(input)
            .map(|f| f.as_str().as_bytes().to_vec())
            .unwrap_or_default()
    } else if name.starts_with("test-html5-") {
        crate::xss::html5::tokens(input)
    } else {
        panic!("unknown test file type {name}");
    };
    rtrim(&out).to_vec()
}

fn c_outputs() -> BTreeMap<String, Vec<u8>> {
    let text = std::fs::read(dir().join("expected-c-3.9.2.txt")).expect("expected-c-3.9.2.txt");
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut map = BTreeMap::new();
    for block in text.split("=== ").skip(1) {
        let (name, body) = block.split_once('\n').unwrap_or((block, ""));
        map.insert(name.to_string(), rtrim(body.as_bytes()).to_vec());
    }
    map
}

#[test]
fn libinjection_test_files() {
    let c = c_outputs();
    let mut files: Vec<_> = std::fs::read_dir(dir())
        .expect("test data dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("test-") && n.ends_with(".txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let (mut same_as_c, mut meets_stored) = (0, 0);
    let mut mismatches = Vec::new();
    for name in &files {
        let text = std::fs::read(dir().join(name)).expect("read test file");
        let (input, expected) = parse(&text).expect("well-formed test file");
        let got = run(name, &input);
        if got == expected {
            meets_stored += 1;
        }
        match c.get(name) {
            Some(want) if *want == got => same_as_c += 1,
            want => mismatches.push(format!(
                "{name}: got {:?}, C 3.9.2 printed {:?}",
                String::from_utf8_lossy(&got),
                want.map(|w| String::from_utf8_lossy(w).into_owned())
            )),
        }
    }
    println!(
        "libinjection test files: {same_as_c}/{} identical to C libinjection 3.9.2; \
         {meets_stored}/{} meet the stored (mixed-version) expectations",
        files.len(),
        files.len()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
