//! `tandem status`: what a running Tandem reports, as tables.

use std::process::ExitCode;

use anyhow::Context;
use tandem_admin::StatusDoc;

/// Arguments of `tandem status`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The admin API to ask.
    #[arg(long, env = "TANDEM_ADMIN", default_value = "127.0.0.1:9090")]
    admin: String,
    /// Print the raw JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let url = format!("{}/api/v1/status", super::admin_base(&a.admin));
        let resp = reqwest::get(&url)
            .await
            .with_context(|| format!("cannot reach the admin API at {url}; is Tandem running (tandem up)? pass --admin ADDR if it listens elsewhere"))?;
        let body = resp.error_for_status()?.text().await?;
        if a.json {
            println!("{body}");
        } else {
            let doc: StatusDoc = serde_json::from_str(&body).context("the admin API answered with something that is not a Tandem status")?;
            print!("{}", tandem_admin::render_tables(&doc.tables));
        }
        Ok(ExitCode::SUCCESS)
    })
}
