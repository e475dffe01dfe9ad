//! `tandem registry`: run one region's replica of the geo-replicated OCI registry.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::ConfigArg;

/// Arguments of `tandem registry`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// The region whose replica to run (a key of [registry.replicas]).
    #[arg(long, required_unless_present = "hash_password")]
    region: Option<String>,
    /// Read a password from stdin and print its argon2id hash for `password_hash`, then exit.
    #[arg(long)]
    hash_password: bool,
    /// Serve the admin API here instead of [admin] listen.
    #[arg(long)]
    admin: Option<std::net::SocketAddr>,
    /// Do not serve the admin API (the replica's own /metrics and status endpoints remain).
    #[arg(long)]
    no_admin: bool,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.hash_password {
        let mut pw = String::new();
        std::io::stdin()
            .read_to_string(&mut pw)
            .context("reading the password from stdin")?;
        let pw = pw.trim_end_matches(['\n', '\r']);
        anyhow::ensure!(!pw.is_empty(), "the password on stdin is empty");
        println!(
            "{}",
            tandem_registry::hash_password(pw).map_err(anyhow::Error::msg)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let region = a.region.unwrap_or_default();
    let cfg = match tandem_config::load(&a.config.path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let reg = cfg.registry.with_context(|| {
        format!(
            "{} has no [registry] section; add one with [registry.replicas.{region}]",
            a.config.path.display()
        )
    })?;
    let listen = reg
        .replica(&region)
        .with_context(|| {
            format!(
                "region {region:?} has no replica; add [registry.replicas.{region}] to {}",
                a.config.path.display()
            )
        })?
        .listen;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let admin_addr = a.admin.unwrap_or(cfg.admin.listen);
    let (regions, admin_token, no_admin) =
        (cfg.regions.clone(), cfg.admin.token.clone(), a.no_admin);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let shutdown = CancellationToken::new();
        // SIGHUP has nothing to reload yet: registry config changes need a restart.
        let _reloads = crate::signals::install(shutdown.clone())?;
        let handle = tandem_registry::Replica::start(&reg, &region, listener, shutdown.clone())
            .await
            .context("starting the registry replica")?;
        eprintln!(
            "tandem registry: region {region} serving on {}",
            handle.local_addr()
        );
        let admin_task = if no_admin {
            None
        } else {
            let mut metrics = prometheus_client::registry::Registry::default();
            handle.register_metrics(&mut metrics);
            let admin =
                tandem_admin::Admin::new(&regions, admin_token, metrics, vec![handle.component()]);
            Some(admin.spawn(admin_addr, shutdown.clone()).await?)
        };
        shutdown.cancelled().await;
        tracing::info!("shutting down: finishing in-flight requests");
        handle.wait().await;
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
