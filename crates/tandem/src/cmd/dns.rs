//! `tandem dns`: run the global DNS traffic manager.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tandem_admin::Admin;
use tandem_dns::{DnsServer, Listeners};
use tokio_util::sync::CancellationToken;

use super::ConfigArg;

/// Arguments of `tandem dns`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Listen here instead of [dns] listen (repeatable). Several instances can serve one
    /// zone from the same config, each with its own --listen.
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// Serve the admin API here instead of [admin] listen.
    #[arg(long)]
    admin: Option<SocketAddr>,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve(a))
}

async fn serve(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = tandem_config::load(&a.config.path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dns = cfg
        .dns
        .as_ref()
        .context("this config has no [dns] section; add one (see docs/config.md) or use `tandem up` for the lab")?;
    let token = CancellationToken::new();
    let mut reloads = crate::signals::install(token.clone())?;
    let mut registry = Registry::default();
    let server = DnsServer::new(&cfg, &mut registry, token.clone())?;
    let listen = if a.listen.is_empty() {
        dns.listen.clone()
    } else {
        a.listen.clone()
    };
    let listeners = Listeners::bind(&listen, dns.workers).await?;
    let admin_addr = a.admin.unwrap_or(cfg.admin.listen);
    let admin = Admin::new(
        &cfg.regions,
        cfg.admin.token.clone(),
        registry,
        vec![server.component()],
    );
    let admin_task = admin.spawn(admin_addr, token.clone()).await?;

    let path = a.config.path.clone();
    let reloader = server.clone();
    tokio::spawn(async move {
        while reloads.recv().await.is_some() {
            match tandem_config::load(&path) {
                Ok(cfg) => match reloader.reload(&cfg) {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "reload refused; still serving the previous config")
                    }
                },
                Err(e) => {
                    tracing::error!("reload refused; still serving the previous config:\n{e}")
                }
            }
        }
    });
    server.run(listeners, token.clone()).await?;
    let _ = admin_task.await;
    Ok(ExitCode::SUCCESS)
}
