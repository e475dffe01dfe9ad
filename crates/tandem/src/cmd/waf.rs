//! `tandem waf`: check WAF policies, evaluate a request against one, and run the OWASP CRS
//! regression corpus against the engine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tandem_waf::transaction::RequestHead;
use tandem_waf::{Policy, RouteOptions, WafMetrics, ftw};

use super::ConfigArg;

/// Arguments of `tandem waf`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Compile every [waf] policy (rules, data files, custom rules) and report what loaded.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Evaluate one request against a policy and print the outcome as JSON.
    Eval {
        #[command(flatten)]
        config: ConfigArg,
        /// The policy.
        #[arg(long)]
        policy: String,
        /// Method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// Request target (path and query).
        #[arg(long, default_value = "/")]
        uri: String,
        /// A header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The request body.
        #[arg(long)]
        data: Option<String>,
        /// The client address.
        #[arg(long, default_value = "100.64.0.10")]
        client: std::net::IpAddr,
    },
    /// Run the CRS regression corpus (go-ftw YAML) in-process and print pass/fail per file.
    TestCrs {
        /// The CRS directory (with rules/ and tests/regression/tests).
        #[arg(long, env = "TANDEM_CRS_DIR")]
        crs: PathBuf,
        /// A go-ftw overrides file listing tests to skip.
        #[arg(long)]
        skips: Option<PathBuf>,
        /// Print every failure.
        #[arg(long)]
        failures: bool,
    },
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.cmd {
        Cmd::Check { config } => check(&config),
        Cmd::Eval {
            config,
            policy,
            method,
            uri,
            headers,
            data,
            client,
        } => eval(&config, &policy, method, uri, &headers, data, client),
        Cmd::TestCrs {
            crs,
            skips,
            failures,
        } => test_crs(&crs, skips, failures),
    }
}

fn policies(
    config: &ConfigArg,
) -> anyhow::Result<(tandem_config::Config, tandem_config::waf::WafConfig)> {
    let cfg = tandem_config::load(&config.path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let waf = cfg
        .waf
        .clone()
        .context("this config has no [waf] section; add [waf.policies.NAME] (see docs/waf.md)")?;
    Ok((cfg, waf))
}

fn geo(cfg: &tandem_config::Config) -> Option<Arc<dyn tandem_waf::policy::GeoLookup>> {
    let regions: Vec<String> = cfg.regions.iter().map(|r| r.name.clone()).collect();
    match tandem_geo::Geo::new(&cfg.geo, &regions) {
        Ok(g) => Some(Arc::new(g)),
        Err(e) => {
            eprintln!("warning: geography unavailable ({e}); geo_match conditions never match");
            None
        }
    }
}

fn check(config: &ConfigArg) -> anyhow::Result<ExitCode> {
    let (cfg, waf) = policies(config)?;
    let geo = geo(&cfg);
    let mut failed = false;
    for p in &waf.policies {
        let t = Instant::now();
        match Policy::compile(p, geo.clone(), None, WafMetrics::default()) {
            Ok(policy) => {
                let (rules, bt) = policy
                    .rules()
                    .map_or((0, 0), |r| (r.rule_count(), r.backtracking_patterns()));
                println!(
                    "{}: {:?}, {} managed rules ({} with backtracking regexes), {} custom rules, paranoia level {}, loaded in {:?}",
                    p.name,
                    p.mode,
                    rules,
                    bt,
                    p.custom_rules.len(),
                    p.paranoia_level,
                    t.elapsed()
                );
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn eval(
    config: &ConfigArg,
    name: &str,
    method: String,
    uri: String,
    headers: &[String],
    data: Option<String>,
    client: std::net::IpAddr,
) -> anyhow::Result<ExitCode> {
    let (cfg, waf) = policies(config)?;
    let p = waf.policy(name).with_context(|| {
        format!(
            "no policy {name:?}; the config defines: {}",
            waf.policies
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let policy = Arc::new(Policy::compile(p, geo(&cfg), None, WafMetrics::default())?);
    let mut hs = Vec::new();
    for h in headers {
        let (n, v) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} is not `Name: value`"))?;
        hs.push((n.trim().as_bytes().to_vec(), v.trim().as_bytes().to_vec()));
    }
    if !hs.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"host")) {
        hs.push((b"Host".to_vec(), b"localhost".to_vec()));
    }
    let head = RequestHead {
        method,
        uri: uri.into_bytes(),
        protocol: "HTTP/1.1".into(),
        headers: hs,
        client: std::net::SocketAddr::new(client, 40000),
        server: None,
        request_id: "cli".into(),
    };
    let mut t = policy.transaction(&head, &RouteOptions::default());
    if t.request_headers().is_continue() && t.wants_request_body() {
        t.request_body(data.as_deref().unwrap_or("").as_bytes(), false);
    }
    let outcome = t.finish();
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(ExitCode::SUCCESS)
}

fn test_crs(
    crs: &std::path::Path,
    skips: Option<PathBuf>,
    failures: bool,
) -> anyhow::Result<ExitCode> {
    let t = Instant::now();
    let rs = Arc::new(ftw::load_crs(crs, ftw::CRS_TEST_SETUP)?);
    eprintln!("loaded {} rules in {:?}", rs.rule_count(), t.elapsed());
    let skips = match skips {
        Some(p) => ftw::read_skips(&p).map_err(|e| anyhow::anyhow!(e))?,
        None => Vec::new(),
    };
    let report = ftw::run_corpus(&rs, &crs.join("tests/regression/tests"), &skips, &|_| true)
        .map_err(|e| anyhow::anyhow!(e))?;
    print!("{}", report.render(failures));
    Ok(if report.total().failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
