//! `tandem lab`: fail and restore regions of a running lab.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

/// Arguments of `tandem lab`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
    /// The lab's admin API.
    #[arg(
        long,
        global = true,
        env = "TANDEM_ADMIN",
        default_value = "127.0.0.1:9090"
    )]
    admin: String,
    /// The lab directory, where `tandem up` wrote the admin token.
    #[arg(long, global = true, default_value = tandem_config::lab::DEFAULT_LAB_DIR)]
    lab_dir: PathBuf,
    /// The admin token (default: read from the lab directory).
    #[arg(
        long,
        global = true,
        env = "TANDEM_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Take a region down: stop every listener it has (apps and Tandem services).
    Fail {
        /// The region, e.g. eastus.
        region: String,
    },
    /// Bring a failed region back.
    Restore {
        /// The region, e.g. eastus.
        region: String,
    },
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let token = match a.token.clone() {
        Some(t) => t,
        None => {
            let p = tandem_lab::token_path(&a.lab_dir);
            std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read the lab's admin token from {}; run this where `tandem up` runs, or pass --lab-dir / --token", p.display()))?
                .trim()
                .to_string()
        }
    };
    let (verb, region) = match &a.action {
        Action::Fail { region } => ("fail", region),
        Action::Restore { region } => ("restore", region),
    };
    let url = format!(
        "{}/api/v1/lab/regions/{region}/{verb}",
        super::admin_base(&a.admin)
    );
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(&url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("cannot reach the lab at {url}; is `tandem up` running?"))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status.is_success() {
            println!("{region}: {}", body["state"].as_str().unwrap_or(verb));
            Ok(ExitCode::SUCCESS)
        } else {
            let msg = body["error"].as_str().unwrap_or("request refused");
            let hint = body["hint"]
                .as_str()
                .map(|h| format!("\n  hint: {h}"))
                .unwrap_or_default();
            anyhow::bail!("{verb} {region}: {status}: {msg}{hint}")
        }
    })
}
