//! Subcommands. Each lives in its own module with its clap `Args` and a `run` function.

mod check;
mod dns;
mod edge;
mod lab;
mod registry;
mod status;
mod up;
mod volume;
mod waf;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::logging::LogArgs;

/// Tandem: multi-region continuity in one binary — a global DNS traffic manager, an edge
/// proxy with a WAF, a geo-replicated registry and volume replication, driven by one
/// `tandem.toml`.
#[derive(Debug, Parser)]
#[command(
    name = "tandem",
    version,
    about = "Multi-region continuity in one binary: DNS traffic manager, edge proxy with WAF, geo-replicated registry, volume replication.",
    propagate_version = true,
    after_help = "Start here:\n  tandem up                      run a two-region lab on loopback and print what to try\n  tandem check -c tandem.toml    validate a config (every problem, with file, line and key)\n  tandem status                  regions, endpoints, health and traffic of a running Tandem\n\nDocs: README.md, docs/config.md (every key), docs/ARCHITECTURE.md"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the local multi-region lab (built in, or from -c FILE).
    Up(up::Args),
    /// Validate a config file and report every problem with its line and key.
    Check(check::Args),
    /// Show regions, endpoints, health and traffic of a running Tandem.
    Status(status::Args),
    /// Fail and restore regions of a running lab.
    Lab(lab::Args),
    /// Run the global DNS traffic manager.
    Dns(dns::Args),
    /// Run the edge proxy of one region (TLS, routes, origin failover, rules).
    Edge(edge::Args),
    /// Check WAF policies, evaluate a request, run the CRS regression corpus.
    Waf(waf::Args),
    /// Run one region's replica of the geo-replicated OCI registry.
    Registry(registry::Args),
    /// Volume replication: replicate, keep standbys, restore, activate, reverse.
    Volume(volume::Args),
}

/// The config file option, shared by the commands that read one.
#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArg {
    /// Path to tandem.toml.
    #[arg(
        short = 'c',
        long = "config",
        env = "TANDEM_CONFIG",
        default_value = "tandem.toml"
    )]
    pub(crate) path: PathBuf,
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(a) => up::run(a),
        Command::Dns(a) => dns::run(a),
        Command::Check(a) => check::run(a),
        Command::Edge(a) => edge::run(a),
        Command::Volume(a) => volume::run(a),
        Command::Status(a) => status::run(a),
        Command::Lab(a) => lab::run(a),
        Command::Waf(a) => waf::run(a),
        Command::Registry(a) => registry::run(a),
    }
}

/// `127.0.0.1:9090` or `http://host:port` → `http://host:port` (no trailing slash).
pub(crate) fn admin_base(addr: &str) -> String {
    let a = addr.trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}
