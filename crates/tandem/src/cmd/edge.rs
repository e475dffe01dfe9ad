//! `tandem edge`: run the edge proxy of one region. Everything happens in `tandem-edge`; this
//! parses arguments, loads the config, compiles the WAF policies, wires signals (SIGINT/SIGTERM
//! drain and stop, SIGHUP reloads config, WAF policies and certificates) and the admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tandem_edge::waf::{EdgeWaf, WafComponent};
use tandem_edge::{Edge, EdgeOptions, JsonLines, NoLog};
use tokio_util::sync::CancellationToken;

use super::ConfigArg;

/// Arguments of `tandem edge`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// The region whose `[edge.instances.<region>]` listeners to serve.
    #[arg(long, env = "TANDEM_REGION")]
    region: String,
    /// Admin API address (overrides `[admin] listen`); `off` to run without it.
    #[arg(long)]
    admin: Option<String>,
    /// Where the JSON access log goes: `stdout`, `off`, or a file path (appended).
    #[arg(long, default_value = "stdout")]
    access_log: String,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    // One thread: a current-thread runtime, which wakes tasks without cross-thread
    // synchronisation; more: the work-stealing runtime.
    let mut rt = match a.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all();
    rt.build()?.block_on(serve(a))
}

async fn serve(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = match tandem_config::load(&a.config.path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut opts = EdgeOptions::new(&a.region);
    opts.access_log = match a.access_log.as_str() {
        "off" => Arc::new(NoLog),
        "stdout" => Arc::new(JsonLines::new(std::io::stdout(), 65_536)?),
        path => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(PathBuf::from(path))
                .with_context(|| format!("cannot open access log {path}"))?;
            Arc::new(JsonLines::new(f, 65_536)?)
        }
    };
    let mut registry = prometheus_client::registry::Registry::default();
    // WAF policies compile on a blocking thread (loading CRS takes about half a second).
    let waf = match EdgeWaf::load(&cfg, &mut registry).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    opts.inspector = waf.inspector();
    let edge = Edge::new(&cfg, opts, &mut registry)?;
    let listeners = edge.bind().await?;
    let cancel = CancellationToken::new();

    let admin_addr: Option<SocketAddr> = match a.admin.as_deref() {
        Some("off") => None,
        Some(s) => Some(
            s.parse()
                .with_context(|| format!("--admin {s:?} is not host:port"))?,
        ),
        None => Some(cfg.admin.listen),
    };
    let admin_task = match admin_addr {
        Some(addr) => {
            let admin = tandem_admin::Admin::new(
                &cfg.regions,
                cfg.admin.token.clone(),
                registry,
                vec![
                    Arc::new(tandem_edge::admin::EdgeComponent(vec![edge.clone()])),
                    Arc::new(WafComponent(waf.clone())),
                ],
            );
            Some(admin.spawn(addr, cancel.clone()).await?)
        }
        None => None,
    };
    tracing::info!(
        region = %a.region,
        https = ?listeners.https_addrs(),
        http = ?listeners.http_addrs(),
        "edge started"
    );

    // Signals: stop (drain) on SIGINT/SIGTERM, reload on SIGHUP.
    {
        let (cancel, edge, waf, path) = (
            cancel.clone(),
            edge.clone(),
            waf.clone(),
            a.config.path.clone(),
        );
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = term.recv() => break,
                    _ = hup.recv() => match tandem_config::load(&path) {
                        Ok(cfg) => {
                            if let Err(e) = tandem_edge::waf::reload(&edge, &waf, &cfg).await {
                                tracing::error!(error = %e, "reload failed; the running config stays");
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "reload failed; the running config stays"),
                    },
                }
            }
            tracing::info!("draining in-flight requests");
            cancel.cancel();
        });
    }
    edge.run(listeners, cancel.clone()).await;
    edge.stop_probes().await;
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    tracing::info!("edge stopped");
    Ok(ExitCode::SUCCESS)
}
