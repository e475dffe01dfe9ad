//! `tandem check`: validate a config file.

use std::process::ExitCode;

use super::ConfigArg;

/// Arguments of `tandem check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Print the validated config (secrets redacted) as JSON.
    #[arg(long)]
    print: bool,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    match tandem_config::load(&a.config.path) {
        Ok(cfg) => {
            if a.print {
                println!("{}", cfg.redacted_json());
            } else {
                let sections: Vec<&str> = [
                    cfg.dns.as_ref().map(|_| "dns"),
                    cfg.edge.as_ref().map(|_| "edge"),
                    cfg.waf.as_ref().map(|_| "waf"),
                    cfg.registry.as_ref().map(|_| "registry"),
                    cfg.volume.as_ref().map(|_| "volume"),
                    cfg.lab.as_ref().map(|_| "lab"),
                ]
                .into_iter()
                .flatten()
                .collect();
                println!(
                    "{}: ok ({} region{}; sections: {})",
                    a.config.path.display(),
                    cfg.regions.len(),
                    if cfg.regions.len() == 1 { "" } else { "s" },
                    if sections.is_empty() {
                        "none".to_string()
                    } else {
                        sections.join(", ")
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}
