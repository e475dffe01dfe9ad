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
    let before = tandem_waf::memo::hits();
    let c = compare_switched(&dir, |rs| {
        rs.set_scan_memo(false);
        rs.set_chain_memo(false);
        rs.set_op_memo(false);
    });
    let hits = tandem_waf::memo::hits() - before;
    assert!(
        hits > c.stages as u64 * 10,
        "the memos answered almost nothing ({hits} hits in {} stages)",
        c.stages
    );
    assert_same(&c);
}

/// The per-value link results only save work: with them (warmed by the stages before, on
/// this thread: the test client's headers and many arguments recur across the corpus) and
/// without them, every stage ends the same way, and they decided many rules.
#[test]
fn link_results_change_no_outcome_on_the_corpus() {
    let Some(dir) = crs_dir() else {
        return;
    };
    let before = tandem_waf::link_results::skips();
    let c = compare_switched(&dir, |rs| rs.set_link_results(false));
    let skips = tandem_waf::link_results::skips() - before;
    assert!(
        skips > c.stages as u64 * 20,
        "the link results decided almost nothing ({skips} rules in {} stages)",
        c.stages
    );
    assert_same(&c);
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
