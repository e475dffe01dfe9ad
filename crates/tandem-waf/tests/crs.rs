//! The OWASP CRS regression corpus, run in-process at paranoia level 4 in detection mode (the
//! way CRS's own CI runs it), with the pass-rate floor the WAF is held to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tandem_waf::ftw;
use tandem_waf::ruleset::RuleSet;

/// The share of the corpus that must pass (skips count as not passing). The goal is 95%; the
/// engine passes all of it, so the floor guards against regressions.
const FLOOR: f64 = 0.99;

/// The CRS copy, or `None` after a note when there is none (a failure in CI, which must have
/// it).
fn crs_dir() -> Option<PathBuf> {
    let dir = ftw::default_crs_dir();
    if dir.is_none() {
        if std::env::var("TANDEM_CI").as_deref() == Ok("1") {
            panic!("the CRS copy (shared/crs) is missing; set TANDEM_CRS_DIR");
        }
        eprintln!("skipping: no CRS copy found (set TANDEM_CRS_DIR)");
    }
    dir
}

/// Prevention mode, CRS defaults: paranoia level 1, inbound threshold 5, outbound 4.
const PL1_PREVENTION: &str =
    "SecRuleEngine On\nSecResponseBodyMimeType text/plain text/html text/xml application/json\n";

/// Every corpus stage served by CRS as loaded and by a copy that `switch` changed.
fn compare_switched(dir: &Path, switch: impl FnOnce(&mut RuleSet)) -> ftw::Comparison {
    compare_switched_with(dir, ftw::CRS_TEST_SETUP, switch)
}

/// [`compare_switched`] with another setup than the corpus's paranoia level 4.
fn compare_switched_with(
    dir: &Path,
    setup: &str,
    switch: impl FnOnce(&mut RuleSet),
) -> ftw::Comparison {
    let with = Arc::new(ftw::load_crs(dir, setup).expect("CRS loads"));
    let mut without = ftw::load_crs(dir, setup).expect("CRS loads");
    switch(&mut without);
    let without = Arc::new(without);
    ftw::compare_corpus(&with, &without, &dir.join("tests/regression/tests")).expect("corpus runs")
}

#[test]
fn crs_regression_corpus_pass_rate() {
    let Some(dir) = crs_dir() else {
        return;
    };
    let rs = Arc::new(ftw::load_crs(&dir, ftw::CRS_TEST_SETUP).expect("CRS loads"));
    let skips = ftw::read_skips(&ftw::skips_file()).expect("skip list parses");
    let report = ftw::run_corpus(&rs, &dir.join("tests/regression/tests"), &skips, &|_| true)
        .expect("corpus runs");
    eprint!("{}", report.render(true));
    let total = report.total();
    assert!(
        total.passed + total.failed + total.skipped > 3000,
        "the corpus looks incomplete: {total:?}"
    );
    assert!(
        total.pass_rate() >= FLOOR,
        "CRS corpus pass rate {:.1}% is below {:.0}%",
        total.pass_rate() * 100.0,
        FLOOR * 100.0
    );
}

#[test]
fn blocking_decisions_at_the_default_paranoia_level() {
    let Some(dir) = crs_dir() else {
        return;
    };
    let rs = Arc::new(ftw::load_crs(&dir, PL1_PREVENTION).expect("CRS loads"));
    let skips = ftw::read_skips(&ftw::skips_file()).expect("skip list parses");
    let r = ftw::run_blocking(&rs, &dir.join("tests/regression/tests"), &skips).expect("runs");
    eprintln!(
        "blocked {} of {} attack tests; missed: {:?}",
        r.blocked,
        r.blocked + r.missed.len(),
        r.missed
    );
    eprintln!(
        "passed {} of {} benign tests; false positives: {:?}",
        r.passed,
        r.passed + r.false_positives.len(),
        r.false_positives
    );
    assert!(r.blocked > 500, "too few attack tests were judged: {r:?}");
    let rate = r.blocked as f64 / (r.blocked + r.missed.len()) as f64;
    assert!(
        rate >= 0.95,
        "only {:.1}% of decisive attacks were blocked",
        rate * 100.0
    );
    assert!(
        r.passed >= 30 && r.false_positives.is_empty(),
        "benign traffic was blocked: {:?}",
        r.false_positives
    );
}

/// The whole corpus ran, and every stage ended the same way with the switch and without it:
/// the same status, the same log lines (rule ids, messages, matched data) and the same TX
/// collection (anomaly scores and every variable the rules set, including the ones set by
/// rules that do not log).
fn assert_same(c: &ftw::Comparison) {
    assert!(c.stages > 3000, "the corpus looks incomplete: {c:?}");
    assert!(
        c.differences.is_empty(),
        "{} stages differ:\n{}",
        c.differences.len(),
        c.differences.join("\n")
    );
}

/// [`compare_switched`], requiring the same outcomes, and that what `switch` turns off did
/// its work on this thread: `counter` (the thread's count of it) grew by more than
/// `per_stage` a stage.
fn assert_same_and_used(
    dir: &Path,
    switch: impl FnOnce(&mut RuleSet),
    counter: fn() -> u64,
    per_stage: u64,
    what: &str,
) {
    let before = counter();
    let c = compare_switched(dir, switch);
    let n = counter() - before;
    assert!(
        n > c.stages as u64 * per_stage,
        "almost none of {what} ({n} in {} stages)",
        c.stages
    );
    assert_same(&c);
}

/// The shortcuts for rules on one TX variable only save work: with them and without them,
/// every stage of the corpus (at paranoia level 4, where every rule runs) ends the same way.
#[test]
fn tx_shortcut_changes_no_outcome_on_the_corpus() {
    let Some(dir) = crs_dir() else {
        return;
    };
    let c = compare_switched(&dir, |rs| rs.set_tx_shortcut(false));
    assert_same(&c);
}

/// The per-thread memos of scans, transformation chains and operator results only save work:
/// with them (warmed by every stage before, on this thread) and without them, every stage
/// ends the same way.
#[test]
fn value_memos_change_no_outcome_on_the_corpus() {
    let Some(dir) = crs_dir() else {
        return;
    };
    let switch = |rs: &mut RuleSet| {
        rs.set_scan_memo(false);
        rs.set_chain_memo(false);
        rs.set_op_memo(false);
    };
    assert_same_and_used(
        &dir,
        switch,
        tandem_waf::memo::hits,
        10,
        "the memos' answers",
    );
}

/// The per-value link results only save work: with them (warmed by the stages before, on
/// this thread: the test client's headers and many arguments recur across the corpus) and
/// without them, every stage ends the same way, and they decided many rules.
#[test]
fn link_results_change_no_outcome_on_the_corpus() {
    let Some(dir) = crs_dir() else {
        return;
    };
    let switch = |rs: &mut RuleSet| rs.set_link_results(false);
    let skips = tandem_waf::link_results::skips;
    assert_same_and_used(&dir, switch, skips, 20, "rules decided by the link results");
}

/// The same at paranoia level 1 in prevention mode, with the link results.
#[test]
fn link_results_change_no_outcome_at_paranoia_level_1() {
    let Some(dir) = crs_dir() else {
        return;
    };
    let c = compare_switched_with(&dir, PL1_PREVENTION, |rs| rs.set_link_results(false));
    assert_same(&c);
}

/// The same at paranoia level 1 in prevention mode, where the paranoia-level gates match and
/// skip (at level 4 none of them does).
#[test]
fn tx_shortcut_changes_no_outcome_at_paranoia_level_1() {
    let Some(dir) = crs_dir() else {
        return;
    };
    let c = compare_switched_with(&dir, PL1_PREVENTION, |rs| rs.set_tx_shortcut(false));
    assert_same(&c);
}

#[test]
fn literal_prefilter_changes_no_outcome_on_the_corpus() {
    let Some(dir) = crs_dir() else {
        return;
    };
    let c = compare_switched(&dir, |rs| rs.set_literal_prefilter(false));
    eprintln!(
        "{} stages; rules evaluated {} with the prefilter ({} skipped), {} without",
        c.stages, c.evaluated.0, c.prefiltered.0, c.evaluated.1
    );
    assert_eq!(
        c.prefiltered.1, 0,
        "the switch did not turn the prefilter off"
    );
    assert!(
        c.prefiltered.0 > c.stages as u64 * 50,
        "the prefilter skipped almost nothing: {c:?}"
    );
    assert_same(&c);
}

/// Requests put together from small pools of benign and hostile parts, so that values recur
/// and the link results decide many rules, served with them and without them at paranoia
/// level 4 (detection) and 1 (prevention): every request must end the same way (the
/// interruption, every logged match, the TX collection). A wrong record would let an attack
/// through; this looks for one where the corpus's mostly unique values would not.
#[test]
fn link_results_change_no_outcome_on_recurring_parts() {
    use tandem_waf::transaction::{RequestHead, Transaction};
    let Some(dir) = crs_dir() else {
        return;
    };
    const PATHS: &[&str] = &[
        "/",
        "/index.php",
        "/products/list",
        "/a/../../etc/passwd",
        "/search",
        "/wp-admin/admin-ajax.php",
        "/static/app.js",
        "/cgi-bin/test.cgi",
    ];
    const NAMES: &[&str] = &[
        "q", "id", "page", "file", "cmd", "user", "url", "a[]", "<b>",
    ];
    const VALUES: &[&str] = &[
        "1",
        "blue shoes",
        "1' OR '1'='1",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        ";cat /etc/passwd",
        "javascript:alert(1)",
        "admin",
        "http://evil.example/x.txt?",
        "SELECT * FROM users",
        "eval(base64_decode($x))",
        "${jndi:ldap://x.example/a}",
        "normal text, nothing else",
        "été",
        "%00",
        "onerror=alert(1)",
        "|id",
        "O'Brien",
    ];
    const AGENTS: &[&str] = &[
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        "sqlmap/1.7",
        "curl/8.5.0",
        "() { :; }; /bin/bash -c id",
    ];
    const COOKIES: &[&str] = &[
        "session=abc123",
        "theme=dark",
        "id=1' or 1=1--",
        "x=<svg/onload=1>",
    ];
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    // xorshift64*: the same requests on every run.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: usize| -> usize {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    };
    let mut requests = Vec::new();
    for i in 0..1500 {
        let mut query = Vec::new();
        for _ in 0..next(4) {
            query.push(format!(
                "{}={}",
                enc(NAMES[next(NAMES.len())]),
                enc(VALUES[next(VALUES.len())])
            ));
        }
        let path = PATHS[next(PATHS.len())];
        let uri = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", query.join("&"))
        };
        let mut headers = vec![
            ("Host".to_string(), "shop.example.com".to_string()),
            (
                "User-Agent".to_string(),
                AGENTS[next(AGENTS.len())].to_string(),
            ),
            ("Accept".to_string(), "text/html,*/*;q=0.8".to_string()),
        ];
        let cookies: Vec<&str> = (0..next(3)).map(|_| COOKIES[next(COOKIES.len())]).collect();
        if !cookies.is_empty() {
            headers.push(("Cookie".to_string(), cookies.join("; ")));
        }
        let post = next(3) == 0;
        let body = if post {
            let form: Vec<String> = (0..1 + next(3))
                .map(|_| {
                    format!(
                        "{}={}",
                        enc(NAMES[next(NAMES.len())]),
                        enc(VALUES[next(VALUES.len())])
                    )
                })
                .collect();
            let body = form.join("&").into_bytes();
            headers.push((
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ));
            headers.push(("Content-Length".to_string(), body.len().to_string()));
            body
        } else {
            Vec::new()
        };
        let head = RequestHead {
            method: if post { "POST" } else { "GET" }.into(),
            uri: uri.into_bytes(),
            protocol: "HTTP/1.1".into(),
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.into_bytes(), v.into_bytes()))
                .collect(),
            client: "203.0.113.9:40000".parse().expect("addr"),
            server: None,
            request_id: format!("r{i}"),
        };
        requests.push((head, body));
    }
    let serve = |rs: &Arc<RuleSet>, head: &RequestHead, body: &[u8]| {
        let mut t = Transaction::new(rs.clone(), head);
        t.process_request_headers();
        if t.interruption().is_none() {
            t.process_request_body(body);
        }
        if t.interruption().is_none() {
            t.process_response_headers(
                200,
                "HTTP/1.1",
                &[(b"Content-Type".to_vec(), b"text/html".to_vec())],
            );
            t.process_response_body(b"<html>ok</html>");
        }
        t.process_logging();
        let matches: Vec<String> = t.matches().iter().map(|m| m.log_line()).collect();
        let outcome = (
            t.interruption().map(|i| (i.rule_id, i.status)),
            matches,
            t.tx_collection(),
        );
        (outcome, t.rules_decided_by_results())
    };
    for setup in [ftw::CRS_TEST_SETUP, PL1_PREVENTION] {
        let with = Arc::new(ftw::load_crs(&dir, setup).expect("CRS loads"));
        let mut without = ftw::load_crs(&dir, setup).expect("CRS loads");
        without.set_link_results(false);
        let without = Arc::new(without);
        let (mut decided, mut blocked) = (0u64, 0u32);
        for (head, body) in &requests {
            let (a, n) = serve(&with, head, body);
            let (b, _) = serve(&without, head, body);
            assert_eq!(
                a,
                b,
                "{} {} ended differently",
                head.method,
                String::from_utf8_lossy(&head.uri)
            );
            decided += u64::from(n);
            blocked += u32::from(a.0.is_some());
        }
        eprintln!(
            "{} requests: {decided} rules decided by link results, {blocked} interrupted",
            requests.len()
        );
        assert!(
            decided > requests.len() as u64 * 20,
            "the link results decided almost nothing: {decided}"
        );
    }
}
