//! The CRS regression runner: reads the go-ftw YAML corpus and runs every test in-process.
//!
//! Each stage's request is first written out as bytes exactly as go-ftw sends it (its
//! header ordering, `Content-Type`/`Content-Length`/`Connection` completion, multipart
//! line endings, urlencoding of `data`), then read back by a small HTTP/1.x front end with
//! Apache's strictness (the corpus's `status: 400` expectations are about the server, not
//! the WAF). The parsed request goes through a [`Transaction`] in all five phases against
//! a backend that behaves like CRS's test backend (`albedo`: `/reflect` answers with the
//! status, headers and body given in the request). The log a stage is judged by is the
//! ModSecurity-style line of every logged match.
//!
//! Tests listed in the overrides file are skipped with their reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::LoadError;
use crate::pattern::Pattern;
use crate::ruleset::{Loader, RuleSet};
use crate::transaction::{RequestHead, Transaction};

/// The engine configuration CRS's own CI uses for the regression corpus (from the corpus
/// README): detection only, paranoia level 4, and the test limits.
pub const CRS_TEST_SETUP: &str = r#"
SecResponseBodyMimeType text/plain text/html text/xml application/json
SecAction "id:900005,\
  phase:1,\
  nolog,\
  pass,\
  ctl:ruleEngine=DetectionOnly,\
  ctl:ruleRemoveById=910000,\
  setvar:tx.blocking_paranoia_level=4,\
  setvar:tx.crs_validate_utf8_encoding=1,\
  setvar:tx.arg_name_length=100,\
  setvar:tx.arg_length=400,\
  setvar:tx.total_arg_length=64000,\
  setvar:tx.max_num_args=255,\
  setvar:tx.max_file_size=64100,\
  setvar:tx.combined_file_sizes=65535"
"#;

/// Tandem's base configuration (request body processors and their error rules).
pub const BASE_CONF: &str = include_str!("../conf/base.conf");

/// Load a CRS directory (`crs-setup.conf.example` or `crs-setup.conf`, then `rules/*.conf`)
/// after the base configuration and `extra` directives.
pub fn load_crs(crs_dir: &Path, extra: &str) -> Result<RuleSet, LoadError> {
    let mut l = Loader::new();
    l.add_text(BASE_CONF, "<base.conf>", crs_dir)?;
    l.add_text(extra, "<setup>", crs_dir)?;
    let setup = ["crs-setup.conf", "crs-setup.conf.example"]
        .iter()
        .map(|f| crs_dir.join(f))
        .find(|p| p.exists());
    if let Some(s) = setup {
        l.add_file(&s)?;
    }
    l.add_text("Include rules/*.conf", "<crs>", crs_dir)?;
    l.finish()
}

#[derive(Debug, Deserialize)]
struct FtwFile {
    #[serde(default)]
    rule_id: Option<u32>,
    #[serde(default)]
    tests: Vec<FtwTest>,
}

#[derive(Debug, Deserialize)]
struct FtwTest {
    test_id: u32,
    #[serde(default)]
    stages: Vec<FtwStage>,
}

#[derive(Debug, Deserialize)]
struct FtwStage {
    input: FtwInput,
    #[serde(default)]
    output: FtwOutput,
}

#[derive(Debug, Deserialize, Default)]
struct FtwInput {
    method: Option<String>,
    uri: Option<String>,
    version: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    data: Option<String>,
    encoded_request: Option<String>,
    autocomplete_headers: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
struct FtwOutput {
    status: Option<serde_norway::Value>,
    #[serde(default)]
    log: FtwLog,
    #[serde(default)]
    expect_error: bool,
}

#[derive(Debug, Deserialize, Default)]
struct FtwLog {
    #[serde(default)]
    expect_ids: Vec<u32>,
    #[serde(default)]
    no_expect_ids: Vec<u32>,
    match_regex: Option<String>,
    no_match_regex: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Overrides {
    #[serde(default)]
    test_overrides: Vec<Override>,
}

#[derive(Debug, Deserialize)]
struct Override {
    rule_id: u32,
    #[serde(default)]
    test_ids: Vec<u32>,
    reason: String,
}

/// A test that was skipped, and why.
#[derive(Debug, Clone)]
pub struct Skip {
    /// Rule id of the test file.
    pub rule_id: u32,
    /// Test ids (empty: the whole file).
    pub test_ids: Vec<u32>,
    /// The reason.
    pub reason: String,
}

/// Read an overrides file (go-ftw format: `test_overrides: [{rule_id, test_ids, reason}]`).
pub fn read_skips(path: &Path) -> Result<Vec<Skip>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let o: Overrides =
        serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(o.test_overrides
        .into_iter()
        .map(|o| Skip {
            rule_id: o.rule_id,
            test_ids: o.test_ids,
            reason: o.reason,
        })
        .collect())
}

/// The result of one test.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// Rule file (directory name, like `REQUEST-942-APPLICATION-ATTACK-SQLI`).
    pub file: String,
    /// Rule id.
    pub rule_id: u32,
    /// Test id.
    pub test_id: u32,
    /// What happened.
    pub outcome: TestOutcome,
}

/// Pass, fail (with why) or skip (with why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    /// Every stage met its expectations.
    Passed,
    /// A stage did not.
    Failed(String),
    /// Listed in the overrides file.
    Skipped(String),
}

/// Totals for one rule file or the whole corpus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Passed tests.
    pub passed: usize,
    /// Failed tests.
    pub failed: usize,
    /// Skipped tests.
    pub skipped: usize,
}

impl Tally {
    /// Pass rate over tests run and skipped (skips count against the rate).
    pub fn pass_rate(&self) -> f64 {
        let total = self.passed + self.failed + self.skipped;
        if total == 0 {
            return 0.0;
        }
        self.passed as f64 / total as f64
    }
}

/// The whole run.
#[derive(Debug, Default)]
pub struct Report {
    /// Every test, in corpus order.
    pub results: Vec<TestResult>,
}

impl Report {
    /// Totals per rule file, in name order.
    pub fn per_file(&self) -> BTreeMap<String, Tally> {
        let mut m: BTreeMap<String, Tally> = BTreeMap::new();
        for r in &self.results {
            let t = m.entry(r.file.clone()).or_default();
            match r.outcome {
                TestOutcome::Passed => t.passed += 1,
                TestOutcome::Failed(_) => t.failed += 1,
                TestOutcome::Skipped(_) => t.skipped += 1,
            }
        }
        m
    }

    /// Totals for the corpus.
    pub fn total(&self) -> Tally {
        let mut t = Tally::default();
        for v in self.per_file().values() {
            t.passed += v.passed;
            t.failed += v.failed;
            t.skipped += v.skipped;
        }
        t
    }

    /// The report as text: one line per file, the total, then every failure.
    pub fn render(&self, show_failures: bool) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "{:<48} {:>7} {:>7} {:>7} {:>7}\n",
            "rule file", "passed", "failed", "skipped", "rate"
        ));
        for (f, t) in self.per_file() {
            s.push_str(&format!(
                "{:<48} {:>7} {:>7} {:>7} {:>6.1}%\n",
                f,
                t.passed,
                t.failed,
                t.skipped,
                t.pass_rate() * 100.0
            ));
        }
        let t = self.total();
        s.push_str(&format!(
            "{:<48} {:>7} {:>7} {:>7} {:>6.1}%\n",
            "TOTAL",
            t.passed,
            t.failed,
            t.skipped,
            t.pass_rate() * 100.0
        ));
        if show_failures {
            for r in &self.results {
                if let TestOutcome::Failed(why) = &r.outcome {
                    s.push_str(&format!("FAIL {}-{}: {}\n", r.rule_id, r.test_id, why));
                }
            }
        }
        s.push_str(&format!(
            "{} passed, {} failed, {} skipped\n",
            t.passed, t.failed, t.skipped
        ));
        s
    }
}

/// Every test file of the corpus under `tests_dir` (one directory per rule file), sorted.
fn corpus_files(tests_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = Vec::new();
    let dirs = std::fs::read_dir(tests_dir)
        .map_err(|e| format!("cannot read {}: {e}", tests_dir.display()))?;
    for d in dirs.filter_map(Result::ok) {
        let p = d.path();
        if p.is_dir() {
            for f in std::fs::read_dir(&p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?
                .filter_map(Result::ok)
            {
                let fp = f.path();
                if fp.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    files.push(fp);
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// What [`compare_corpus`] found.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Stages served by both rule sets.
    pub stages: usize,
    /// Rules evaluated / skipped by the literal prefilter, summed over the stages, for each
    /// rule set.
    pub evaluated: (u64, u64),
    /// See `evaluated`.
    pub prefiltered: (u64, u64),
    /// One line per stage where the two disagreed (status, log or TX collection).
    pub differences: Vec<String>,
}

/// Serve every stage of the corpus with two rule sets (the same rules, loaded with different
/// engine options, e.g. with and without the literal prefilter) and report every stage where
/// the outcome differs: the status, the log (rule ids, messages, matched data) or the final
/// TX collection (anomaly scores and every variable the rules set).
pub fn compare_corpus(
    a: &Arc<RuleSet>,
    b: &Arc<RuleSet>,
    tests_dir: &Path,
) -> Result<Comparison, String> {
    let mut out = Comparison::default();
    for f in corpus_files(tests_dir)? {
        let text =
            std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let parsed: FtwFile =
            serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        for t in &parsed.tests {
            for (i, stage) in t.stages.iter().enumerate() {
                let Ok(raw) = build_request(&stage.input) else {
                    continue;
                };
                let (x, y) = (serve(a, &raw), serve(b, &raw));
                out.stages += 1;
                out.evaluated.0 += u64::from(x.evaluated);
                out.evaluated.1 += u64::from(y.evaluated);
                out.prefiltered.0 += u64::from(x.prefiltered);
                out.prefiltered.1 += u64::from(y.prefiltered);
                let what = if x.status != y.status {
                    Some(format!("status {} vs {}", x.status, y.status))
                } else if x.log != y.log {
                    Some(format!("log {} vs {}", summary(&x.log), summary(&y.log)))
                } else if x.state != y.state {
                    Some("TX collection differs".to_string())
                } else {
                    None
                };
                if let Some(w) = what {
                    out.differences.push(format!(
                        "{} test {} stage {}: {w}",
                        f.display(),
                        t.test_id,
                        i + 1
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Run the corpus under `tests_dir` (one directory per rule file) against `rs`.
/// `filter` keeps only rule ids for which it returns true.
pub fn run_corpus(
    rs: &Arc<RuleSet>,
    tests_dir: &Path,
    skips: &[Skip],
    filter: &dyn Fn(u32) -> bool,
) -> Result<Report, String> {
    let files = corpus_files(tests_dir)?;
    let mut report = Report::default();
    for f in files {
        let group = f
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text =
            std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let parsed: FtwFile =
            serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        let rule_id = parsed.rule_id.unwrap_or_else(|| {
            f.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        });
        if !filter(rule_id) {
            continue;
        }
        for t in &parsed.tests {
            let skip = skips.iter().find(|s| {
                s.rule_id == rule_id && (s.test_ids.is_empty() || s.test_ids.contains(&t.test_id))
            });
            let outcome = match skip {
                Some(s) => TestOutcome::Skipped(s.reason.clone()),
                None => run_test(rs, t),
            };
            report.results.push(TestResult {
                file: group.clone(),
                rule_id,
                test_id: t.test_id,
                outcome,
            });
        }
    }
    Ok(report)
}

/// Blocking decisions at the default paranoia level, judged on the corpus: every test that
/// expects a paranoia-level-1 rule whose score alone reaches the threshold (CRITICAL inbound,
/// CRITICAL or ERROR outbound) must be refused by `rs` (loaded in prevention mode at
/// paranoia level 1), and every test of the common-exceptions file (real-world benign
/// traffic) must get through.
#[derive(Debug, Default)]
pub struct BlockingReport {
    /// Attack tests refused.
    pub blocked: usize,
    /// Attack tests that got through: (rule id, test id).
    pub missed: Vec<(u32, u32)>,
    /// Benign tests that got through.
    pub passed: usize,
    /// Benign tests refused: (rule id, test id).
    pub false_positives: Vec<(u32, u32)>,
}

/// Run the blocking check (see [`BlockingReport`]).
pub fn run_blocking(
    rs: &Arc<RuleSet>,
    tests_dir: &Path,
    skips: &[Skip],
) -> Result<BlockingReport, String> {
    let decisive: std::collections::HashSet<u32> = rs
        .rules()
        .filter(|r| {
            let pl1 = r.has_tag("paranoia-level/1");
            let sev = r.actions.severity.unwrap_or(7);
            pl1 && (sev <= 2 || (r.phase >= 3 && r.phase <= 4 && sev <= 3))
        })
        .map(|r| r.id)
        .collect();
    let mut out = BlockingReport::default();
    let mut files = Vec::new();
    for d in std::fs::read_dir(tests_dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
    {
        if d.path().is_dir() {
            for f in std::fs::read_dir(d.path())
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
            {
                files.push(f.path());
            }
        }
    }
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(parsed) = serde_norway::from_str::<FtwFile>(&text) else {
            continue;
        };
        let rule_id = parsed.rule_id.unwrap_or(0);
        let benign_file = f.to_string_lossy().contains("COMMON-EXCEPTIONS");
        for t in &parsed.tests {
            if skips.iter().any(|s| {
                s.rule_id == rule_id && (s.test_ids.is_empty() || s.test_ids.contains(&t.test_id))
            }) {
                continue;
            }
            let Some(stage) = t.stages.last() else {
                continue;
            };
            let attack = stage
                .output
                .log
                .expect_ids
                .iter()
                .any(|id| decisive.contains(id));
            if !attack && !benign_file {
                continue;
            }
            let Ok(raw) = build_request(&stage.input) else {
                continue;
            };
            let res = serve(rs, &raw);
            if res.error && res.status == 400 {
                continue;
            }
            let refused = res.status == 403;
            match (attack, refused) {
                (true, true) => out.blocked += 1,
                (true, false) => out.missed.push((rule_id, t.test_id)),
                (false, false) => out.passed += 1,
                (false, true) => out.false_positives.push((rule_id, t.test_id)),
            }
        }
    }
    Ok(out)
}

fn run_test(rs: &Arc<RuleSet>, t: &FtwTest) -> TestOutcome {
    for (i, stage) in t.stages.iter().enumerate() {
        if let Err(why) = run_stage(rs, stage) {
            return TestOutcome::Failed(if t.stages.len() > 1 {
                format!("stage {}: {why}", i + 1)
            } else {
                why
            });
        }
    }
    TestOutcome::Passed
}

/// What the emulated server did with a stage.
#[derive(Debug, Default)]
struct StageResult {
    status: u16,
    log: String,
    error: bool,
    /// The final TX collection, one `name=value` line each.
    state: String,
    evaluated: u32,
    prefiltered: u32,
}

fn run_stage(rs: &Arc<RuleSet>, stage: &FtwStage) -> Result<(), String> {
    let raw = build_request(&stage.input)?;
    let res = serve(rs, &raw);
    let out = &stage.output;
    if out.expect_error && !res.error && res.status != 400 {
        return Err("expected the request to fail at the HTTP level".into());
    }
    if let Some(s) = &out.status {
        let wanted: Vec<u16> = match s {
            serde_norway::Value::Number(n) => n.as_u64().map(|n| n as u16).into_iter().collect(),
            serde_norway::Value::Sequence(v) => v
                .iter()
                .filter_map(|x| x.as_u64().map(|n| n as u16))
                .collect(),
            _ => Vec::new(),
        };
        if !wanted.is_empty() && !wanted.contains(&res.status) {
            return Err(format!("status {} (wanted {wanted:?})", res.status));
        }
    }
    for id in &out.log.expect_ids {
        if !res.log.contains(&format!("[id \"{id}\"]")) {
            return Err(format!(
                "rule {id} did not match; log: {}",
                summary(&res.log)
            ));
        }
    }
    for id in &out.log.no_expect_ids {
        if res.log.contains(&format!("[id \"{id}\"]")) {
            return Err(format!("rule {id} matched but must not"));
        }
    }
    if let Some(re) = &out.log.match_regex {
        let p = Pattern::new(re).map_err(|e| format!("bad match_regex: {e}"))?;
        if !p.is_match(res.log.as_bytes()).unwrap_or(false) {
            return Err(format!(
                "log does not match /{re}/; log: {}",
                summary(&res.log)
            ));
        }
    }
    if let Some(re) = &out.log.no_match_regex {
        let p = Pattern::new(re).map_err(|e| format!("bad no_match_regex: {e}"))?;
        if p.is_match(res.log.as_bytes()).unwrap_or(false) {
            return Err(format!("log matches /{re}/; log: {}", summary(&res.log)));
        }
    }
    Ok(())
}

fn summary(log: &str) -> String {
    let ids: Vec<&str> = log
        .match_indices("[id \"")
        .map(|(i, _)| {
            let rest = &log[i + 5..];
            &rest[..rest.find('"').unwrap_or(0)]
        })
        .collect();
    format!("ids {ids:?}")
}

/// Build the request bytes as go-ftw does.
fn build_request(input: &FtwInput) -> Result<Vec<u8>, String> {
    if let Some(enc) = &input.encoded_request {
        let mut out = Vec::new();
        crate::transform::base64_decode(enc.trim().as_bytes(), &mut out, false);
        return Ok(out);
    }
    let method = input.method.clone().unwrap_or_else(|| "GET".into());
    let uri = input.uri.clone().unwrap_or_else(|| "/".into());
    let version = input.version.clone().unwrap_or_else(|| "HTTP/1.1".into());
    let autocomplete = input.autocomplete_headers.unwrap_or(true);
    let mut headers = input.headers.clone();
    let mut data: Vec<u8> = match &input.data {
        Some(d) => expand_template(d).into_bytes(),
        None => Vec::new(),
    };
    if !data.is_empty() && autocomplete {
        headers
            .entry("Content-Type".into())
            .or_insert_with(|| "application/x-www-form-urlencoded".into());
        if headers.get("Content-Type").map(String::as_str)
            == Some("application/x-www-form-urlencoded")
        {
            data = encode_form(&data);
        }
    }
    if headers
        .get("Content-Type")
        .is_some_and(|ct| ct.starts_with("multipart/form-data;"))
    {
        let mut d = Vec::with_capacity(data.len() + 64);
        for &c in &data {
            if c == b'\n' {
                d.extend_from_slice(b"\r\n");
            } else {
                d.push(c);
            }
        }
        data = d;
    }
    if autocomplete {
        headers
            .entry("Connection".into())
            .or_insert_with(|| "close".into());
        let body_method = matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
            || method.starts_with("POST")
            || method.ends_with("DELETE");
        if !data.is_empty() || body_method {
            headers
                .entry("Content-Length".into())
                .or_insert_with(|| data.len().to_string());
        }
    }
    let mut out = format!("{method} {uri} {version}\r\n").into_bytes();
    for (k, v) in &headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&data);
    Ok(out)
}

/// The one Go-template function the corpus uses: `{{ "x" | repeat N }}`.
fn expand_template(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(p) = rest.find("{{") {
        let Some(e) = rest[p..].find("}}") else { break };
        out.push_str(&rest[..p]);
        let inner = rest[p + 2..p + e].trim();
        let mut done = false;
        if let Some((lit, f)) = inner.split_once('|') {
            let lit = lit.trim().trim_matches('"');
            let f = f.trim();
            if let Some(n) = f.strip_prefix("repeat")
                && let Ok(n) = n.trim().parse::<usize>()
            {
                out.push_str(&lit.repeat(n.min(10_000_000)));
                done = true;
            }
        }
        if !done {
            out.push_str(&rest[p..p + e + 2]);
        }
        rest = &rest[p + e + 2..];
    }
    out.push_str(rest);
    out
}

/// go-ftw's `encodeDataParameters`: if unescaping changes nothing, escape each key and value.
fn encode_form(data: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(data);
    match go_query_unescape(&s) {
        Some(u) if u == s => {}
        _ => return data.to_vec(),
    }
    let mut out = String::new();
    for tok in s.split('&') {
        if !out.is_empty() {
            out.push('&');
        }
        match tok.split_once('=') {
            Some((k, v)) => {
                out.push_str(&go_query_escape(k));
                out.push('=');
                out.push_str(&go_query_escape(v));
            }
            None => out.push_str(&go_query_escape(tok)),
        }
    }
    out.into_bytes()
}

fn go_query_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if i + 2 >= b.len() {
                    return None;
                }
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
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
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn go_query_escape(s: &str) -> String {
    let mut out = String::new();
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            out.push(c as char);
        } else if c == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Parse the request like a strict HTTP/1.x server, run it through the WAF and the test
/// backend, and collect the log.
fn serve(rs: &Arc<RuleSet>, raw: &[u8]) -> StageResult {
    let mut res = StageResult::default();
    let Some(head_end) = memchr::memmem::find(raw, b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| memchr::memmem::find(raw, b"\n\n").map(|p| (p, 2)))
    else {
        res.error = true;
        res.status = 400;
        return res;
    };
    let head = &raw[..head_end.0];
    let rest = &raw[head_end.0 + head_end.1..];
    let mut lines = head
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let parts: Vec<&[u8]> = line
        .split(|&c| c == b' ')
        .filter(|p| !p.is_empty())
        .collect();
    // A request line without a version is HTTP/0.9: the server answers without a status
    // line, which the client sees as an error, but the WAF still inspects it.
    let http09 = parts.len() == 2;
    if parts.len() != 3 && !http09 {
        res.error = true;
        res.status = 400;
        return res;
    }
    let (method, uri, version) = (
        parts[0],
        parts[1],
        if http09 { &b"HTTP/0.9"[..] } else { parts[2] },
    );
    if http09 {
        res.error = true;
    }
    let valid_version = version.starts_with(b"HTTP/")
        && match &version[5..] {
            [d] => d.is_ascii_digit() && *d != b'0',
            [a, b'.', c] => a.is_ascii_digit() && *a != b'0' && c.is_ascii_digit(),
            _ => false,
        };
    if (!valid_version && !http09) || !method.iter().all(|c| c.is_ascii_graphic()) {
        res.status = 400;
        return res;
    }
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for l in lines {
        if l.is_empty() {
            continue;
        }
        if (l[0] == b' ' || l[0] == b'\t') && !headers.is_empty() {
            if let Some(last) = headers.last_mut() {
                last.1.push(b' ');
                last.1.extend_from_slice(l.trim_ascii());
            }
            continue;
        }
        let Some(c) = memchr::memchr(b':', l) else {
            res.status = 400;
            return res;
        };
        headers.push((l[..c].to_vec(), l[c + 1..].trim_ascii().to_vec()));
    }
    let get = |n: &[u8]| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    // Like Apache, refuse a Host that is not a host name.
    if let Some(h) = get(b"host")
        && !h
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b".-_~:[]".contains(&c))
    {
        res.status = 400;
        return res;
    }
    let chunked = get(b"transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().windows(7).any(|w| w == b"chunked"));
    let body: Vec<u8> = if chunked {
        dechunk(rest)
    } else {
        match get(b"content-length") {
            Some(cl) => match std::str::from_utf8(&cl)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
            {
                Some(n) => rest[..n.min(rest.len())].to_vec(),
                None => {
                    // Apache refuses a Content-Length it cannot read.
                    res.status = 400;
                    return res;
                }
            },
            None => Vec::new(),
        }
    };
    let head = RequestHead {
        method: String::from_utf8_lossy(method).into_owned(),
        uri: uri.to_vec(),
        protocol: String::from_utf8_lossy(version).into_owned(),
        headers,
        client: std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
        server: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 80))),
        request_id: "ftw".into(),
    };
    let mut tx = Transaction::new(rs.clone(), &head);
    // The corpus checks matching, not latency: a loaded CI machine must not cut rules short.
    tx.set_budget(crate::transaction::Budget {
        time: std::time::Duration::from_secs(30),
    });
    let mut status: u16;
    if let Some(i) = tx.process_request_headers() {
        status = i.status;
    } else if let Some(i) = tx.process_request_body(&body) {
        status = i.status;
    } else {
        let (st, rh, rb) = backend(uri, &body);
        status = st;
        if let Some(i) = tx.process_response_headers(st, "HTTP/1.1", &rh) {
            status = i.status;
        } else if tx.wants_response_body() {
            if let Some(i) = tx.process_response_body(&rb) {
                status = i.status;
            }
        } else {
            tx.process_response_body(&[]);
        }
    }
    tx.process_logging();
    let mut log = String::new();
    for n in tx.notes() {
        log.push_str(n);
        log.push('\n');
    }
    for m in tx.matches() {
        if m.logged {
            log.push_str(&m.log_line());
            log.push('\n');
        }
    }
    res.status = status;
    res.log = log;
    for (k, v) in tx.tx_collection() {
        res.state.push_str(&k);
        res.state.push('=');
        res.state.push_str(&String::from_utf8_lossy(&v));
        res.state.push('\n');
    }
    res.evaluated = tx.rules_evaluated();
    res.prefiltered = tx.rules_prefiltered();
    res
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(e) = memchr::memmem::find(b, b"\r\n") {
        let size_txt = String::from_utf8_lossy(&b[..e]);
        let size_txt = size_txt.split(';').next().unwrap_or("").trim();
        let Ok(n) = usize::from_str_radix(size_txt, 16) else {
            break;
        };
        b = &b[e + 2..];
        if n == 0 || n > b.len() {
            break;
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n..];
        b = b.strip_prefix(b"\r\n").unwrap_or(b);
    }
    out
}

/// CRS's test backend: `/reflect` answers with what the request body asks for.
type Response = (u16, Vec<(Vec<u8>, Vec<u8>)>, Vec<u8>);

fn backend(uri: &[u8], body: &[u8]) -> Response {
    let path = uri.split(|&c| c == b'?').next().unwrap_or_default();
    if path == b"/reflect"
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
    {
        let status = v
            .get("status")
            .and_then(serde_json::Value::as_u64)
            .map_or(200, |s| s as u16);
        let mut headers = Vec::new();
        if let Some(h) = v.get("headers").and_then(serde_json::Value::as_object) {
            for (k, val) in h {
                let val = match val {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                headers.push((k.as_bytes().to_vec(), val.into_bytes()));
            }
        }
        let mut rb = Vec::new();
        if let Some(b) = v.get("body").and_then(serde_json::Value::as_str) {
            rb = b.as_bytes().to_vec();
        } else if let Some(b) = v.get("encodedBody").and_then(serde_json::Value::as_str) {
            crate::transform::base64_decode(b.as_bytes(), &mut rb, false);
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(b"content-type"))
        {
            headers.push((b"Content-Type".to_vec(), b"text/plain".to_vec()));
        }
        return (status, headers, rb);
    }
    (
        200,
        vec![(b"Content-Type".to_vec(), b"text/html".to_vec())],
        b"<html><body>OK</body></html>".to_vec(),
    )
}

/// Where the CRS copy is: `$TANDEM_CRS_DIR`, else the copy vendored in the repository
/// (`third_party/crs`), else `shared/crs` beside the repository.
pub fn default_crs_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("TANDEM_CRS_DIR") {
        return Some(PathBuf::from(d));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../../third_party/crs"),
        manifest.join("../../../shared/crs"),
        manifest.join("../../../../shared/crs"),
    ]
    .into_iter()
    .find(|p| p.join("rules").is_dir())
}

/// The skip list shipped with this crate.
pub fn skips_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crs-overrides.yaml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_built_like_go_ftw() {
        let input = FtwInput {
            method: Some("POST".into()),
            headers: [("Host".to_string(), "localhost".to_string())].into(),
            data: Some("a=b c&d".into()),
            ..FtwInput::default()
        };
        let raw = String::from_utf8(build_request(&input).expect("builds")).expect("utf8");
        assert!(raw.starts_with("POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 7\r\nContent-Type: application/x-www-form-urlencoded\r\nHost: localhost\r\n\r\na=b+c&d"), "{raw}");
        assert_eq!(expand_template("x{{ \"1\" | repeat 3 }}y"), "x111y");
    }
}
