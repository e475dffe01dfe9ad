//! Run the OWASP CRS regression corpus against the engine and print the full report.
//!
//! ```text
//! cargo run --release -p tandem-waf --example crs_report -- [CRS_DIR] [--failures] [--rule ID]
//! ```
//!
//! `CRS_DIR` defaults to `$TANDEM_CRS_DIR` or the `shared/crs` directory next to the
//! repository. Skips come from `crates/tandem-waf/crs-overrides.yaml`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

fn main() -> ExitCode {
    let mut dir: Option<PathBuf> = None;
    let mut failures = false;
    let mut only: Option<u32> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--failures" => failures = true,
            "--rule" => only = args.next().and_then(|s| s.parse().ok()),
            _ => dir = Some(PathBuf::from(a)),
        }
    }
    let Some(dir) = dir.or_else(tandem_waf::ftw::default_crs_dir) else {
        eprintln!("no CRS directory: pass one or set TANDEM_CRS_DIR");
        return ExitCode::FAILURE;
    };
    let t = Instant::now();
    let rs = match tandem_waf::ftw::load_crs(&dir, tandem_waf::ftw::CRS_TEST_SETUP) {
        Ok(rs) => Arc::new(rs),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "loaded {} rules ({} need the backtracking engine) in {:?}",
        rs.rule_count(),
        rs.backtracking_patterns(),
        t.elapsed()
    );
    let skips = tandem_waf::ftw::read_skips(&tandem_waf::ftw::skips_file()).unwrap_or_default();
    let t = Instant::now();
    let filter = move |id: u32| only.is_none_or(|o| o == id);
    match tandem_waf::ftw::run_corpus(&rs, &dir.join("tests/regression/tests"), &skips, &filter) {
        Ok(report) => {
            print!("{}", report.render(failures));
            eprintln!("ran in {:?}", t.elapsed());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
