//! Structured logs: human-readable by default, JSON lines with `--log-format json`.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging options shared by every command.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "TANDEM_LOG_FORMAT"
    )]
    pub(crate) log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `tandem_dns=debug,info`.
    #[arg(
        long = "log",
        global = true,
        default_value = "info",
        env = "TANDEM_LOG"
    )]
    pub(crate) filter: String,
}

pub(crate) fn init(args: &LogArgs) {
    let filter = EnvFilter::try_new(&args.filter).unwrap_or_else(|e| {
        eprintln!(
            "warning: bad --log filter {:?} ({e}); using `info`",
            args.filter
        );
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Human => builder.with_target(false).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
