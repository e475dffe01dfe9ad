//! `tandem volume`: replicate volumes to the paired region, keep standbys, restore, activate.
//! Parses arguments, loads config and calls `tandem-volume`; all behaviour lives there.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use tandem_config::volume::VolumeConfig;
use tandem_volume::progress::{ProgressSink, Unit};
use tandem_volume::snapshot::SnapshotFlags;
use tandem_volume::{Direction, Repo, RestoreRequest, SnapshotSel, Status, VolumeSpec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ConfigArg;

/// Arguments of `tandem volume`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// For run, standby and reverse: serve the admin API (status page, the
    /// lag in `/api/v1/status`, `/metrics`) here instead of [admin] listen.
    #[arg(long, global = true)]
    admin: Option<std::net::SocketAddr>,
    /// For run, standby and reverse: do not serve the admin API.
    #[arg(long, global = true)]
    no_admin: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the long-running commands serve the admin API, if anywhere.
struct AdminPlan {
    addr: std::net::SocketAddr,
    regions: Vec<tandem_config::Region>,
    token: Option<tandem_config::value::Secret>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Dir {
    Forward,
    Reverse,
}

#[derive(Debug, clap::Args)]
struct Select {
    /// Only these volumes (default: all that apply).
    #[arg(long = "volume", short = 'v')]
    volumes: Vec<String>,
    /// Only volumes whose side of this command runs in this region.
    #[arg(long)]
    region: Option<String>,
    /// Direction: forward (normal) or reverse (after a failover).
    #[arg(long, value_enum, default_value = "forward")]
    direction: Dir,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Replicate volumes continuously until SIGINT/SIGTERM (a snapshot in progress is
    /// finished or abandoned cleanly). With --standby, also run the standbys of the region.
    Run {
        #[command(flatten)]
        sel: Select,
        /// Also run standbys located in --region.
        #[arg(long)]
        standby: bool,
        /// Replicate even though the volume was activated in the other region (clears the fence).
        #[arg(long)]
        force: bool,
    },
    /// Take one snapshot of a volume now.
    Snapshot {
        /// The volume.
        volume: String,
        #[arg(long, value_enum, default_value = "forward")]
        direction: Dir,
        /// Replicate even though the volume was activated in the other region.
        #[arg(long)]
        force: bool,
    },
    /// List a volume's snapshots.
    Snapshots {
        /// The volume.
        volume: String,
        #[arg(long, value_enum, default_value = "forward")]
        direction: Dir,
    },
    /// Restore a snapshot (or a path in it, or the state at a time) into a directory.
    Restore {
        /// The volume.
        volume: String,
        /// `latest`, a snapshot id (prefix), or a time (2024-05-01T12:00:00Z) for the newest
        /// snapshot at or before it.
        #[arg(long, short = 's', default_value = "latest")]
        snapshot: String,
        /// A path inside the snapshot.
        #[arg(long, default_value = "")]
        path: String,
        /// Where to restore.
        #[arg(long, short = 't')]
        target: PathBuf,
        /// Remove files in the target that are not in the snapshot.
        #[arg(long)]
        delete: bool,
        /// Read and compare existing files instead of trusting size and mtime.
        #[arg(long)]
        verify: bool,
        /// Only show what would be restored.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value = "forward")]
        direction: Dir,
    },
    /// Keep standby directories restored to the newest snapshot until SIGINT/SIGTERM.
    Standby {
        #[command(flatten)]
        sel: Select,
    },
    /// Make a volume's standby the live volume: replication into it stops.
    Activate {
        /// The volume.
        volume: String,
        /// Do not catch up to the newest snapshot first.
        #[arg(long)]
        no_catch_up: bool,
        #[arg(long, value_enum, default_value = "forward")]
        direction: Dir,
    },
    /// After a failover: replicate the activated standby back to the volume's own region
    /// (its reverse repository) until SIGINT/SIGTERM.
    Reverse {
        /// The volume.
        volume: String,
    },
    /// Verify a volume's repository (with --read-data, every pack's content too).
    Check {
        /// The volume.
        volume: String,
        #[arg(long)]
        read_data: bool,
        #[arg(long, value_enum, default_value = "forward")]
        direction: Dir,
    },
    /// Apply the volume's retention policy and prune unneeded data.
    Prune {
        /// The volume.
        volume: String,
        #[arg(long, value_enum, default_value = "forward")]
        direction: Dir,
    },
}

fn direction(d: Dir) -> Direction {
    match d {
        Dir::Forward => Direction::Forward,
        Dir::Reverse => Direction::Reverse,
    }
}

/// Prints progress to stderr at most once a second per phase.
#[derive(Debug)]
struct Printer {
    last: std::sync::Mutex<(String, Instant)>,
    total: std::sync::Mutex<Option<u64>>,
}

impl Printer {
    fn new() -> Self {
        Printer {
            last: std::sync::Mutex::new((String::new(), Instant::now())),
            total: std::sync::Mutex::new(None),
        }
    }
}

impl ProgressSink for Printer {
    fn phase(&self, title: &str, _unit: Unit) {
        eprintln!("{title}...");
        if let Ok(mut t) = self.total.lock() {
            *t = None;
        }
    }
    fn total(&self, _title: &str, total: u64) {
        if let Ok(mut t) = self.total.lock() {
            *t = Some(total);
        }
    }
    fn advance(&self, title: &str, done: u64) {
        if let Ok(mut l) = self.last.lock()
            && (l.0 != title || l.1.elapsed() >= Duration::from_secs(1))
        {
            *l = (title.to_string(), Instant::now());
            match self.total.lock().ok().and_then(|t| *t) {
                Some(t) if t > 0 => eprintln!(
                    "  {title}: {done}/{t} ({:.0}%)",
                    done as f64 * 100.0 / t as f64
                ),
                _ => eprintln!("  {title}: {done}"),
            }
        }
    }
    fn finish(&self, _title: &str) {}
}

fn load(a: &ConfigArg) -> anyhow::Result<(VolumeConfig, tandem_config::Config)> {
    let mut cfg = match tandem_config::load(&a.path) {
        Ok(c) => c,
        Err(e) => bail!("{e}"),
    };
    let volume = cfg.volume.take().with_context(|| {
        format!(
            "{} has no [volume] section (see examples/volume.toml)",
            a.path.display()
        )
    })?;
    Ok((volume, cfg))
}

fn spec(cfg: &VolumeConfig, name: &str, d: Dir) -> anyhow::Result<VolumeSpec> {
    let v = cfg.volume(name).with_context(|| {
        format!(
            "no volume {name:?} in [volume.volumes] (defined: {})",
            cfg.volumes
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    Ok(VolumeSpec::new(cfg, v, direction(d))?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn print<T: serde::Serialize>(json: bool, v: &T, human: impl FnOnce(&T)) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        human(v);
    }
}

fn open(spec: &VolumeSpec, rt: &tokio::runtime::Runtime, create: bool) -> anyhow::Result<Repo> {
    let p: Arc<dyn ProgressSink> = Arc::new(Printer::new());
    Ok(Repo::open(spec, rt.handle().clone(), Some(p), create)?)
}

async fn shutdown_signal(cancel: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            cancel.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing or abandoning snapshots in progress");
    cancel.cancel();
}

fn selected(cfg: &VolumeConfig, sel: &Select, standby: bool) -> anyhow::Result<Vec<VolumeSpec>> {
    let mut out = Vec::new();
    for v in &cfg.volumes {
        if !sel.volumes.is_empty() && !sel.volumes.contains(&v.name) {
            continue;
        }
        if sel.direction == Dir::Reverse && (v.reverse.is_none() || v.standby.is_none()) {
            continue;
        }
        let s = VolumeSpec::new(cfg, v, direction(sel.direction))?;
        let region = if standby {
            match &s.standby {
                Some(sb) => sb.region.clone(),
                None => continue,
            }
        } else {
            s.source_region.clone()
        };
        if sel.region.as_ref().is_some_and(|r| *r != region) {
            continue;
        }
        out.push(s);
    }
    for name in &sel.volumes {
        if cfg.volume(name).is_none() {
            bail!("no volume {name:?} in [volume.volumes]");
        }
    }
    Ok(out)
}

impl PartialEq for Dir {
    fn eq(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (Dir::Forward, Dir::Forward) | (Dir::Reverse, Dir::Reverse)
        )
    }
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let (cfg, full) = load(&a.config)?;
    let rt = runtime()?;
    let json = a.json;
    let admin = (!a.no_admin).then(|| AdminPlan {
        addr: a.admin.unwrap_or(full.admin.listen),
        regions: full.regions.clone(),
        token: full.admin.token.clone(),
    });
    match a.cmd {
        Cmd::Run {
            sel,
            standby,
            force,
        } => {
            let agents = selected(&cfg, &sel, false)?;
            let standbys = if standby {
                selected(&cfg, &sel, true)?
            } else {
                Vec::new()
            };
            if agents.is_empty() && standbys.is_empty() {
                bail!("no volume matches (check --volume, --region and --direction)");
            }
            serve(&rt, agents, standbys, force, admin)
        }
        Cmd::Standby { sel } => {
            let standbys = selected(&cfg, &sel, true)?;
            if standbys.is_empty() {
                bail!(
                    "no volume with a standby matches (check --volume, --region and --direction)"
                );
            }
            serve(&rt, Vec::new(), standbys, false, admin)
        }
        Cmd::Reverse { volume } => {
            let fwd = spec(&cfg, &volume, Dir::Forward)?;
            if !tandem_volume::standby::is_activated(&fwd) {
                bail!(
                    "volume {volume}: its standby has not been activated on this host; run `tandem volume activate {volume}` first (reverse replicates the activated standby back)"
                );
            }
            let rev = spec(&cfg, &volume, Dir::Reverse)?;
            serve(&rt, vec![rev], Vec::new(), false, admin)
        }
        Cmd::Snapshot {
            volume,
            direction,
            force,
        } => {
            let s = Arc::new(spec(&cfg, &volume, direction)?);
            let repo = Arc::new(open(&s, &rt, true)?);
            let cancel = CancellationToken::new();
            rt.spawn(shutdown_signal(cancel.clone()));
            let out = rt.block_on(tandem_volume::snapshot::snapshot_with_hooks(
                repo,
                s,
                SnapshotFlags {
                    ignore_fence: force,
                },
                cancel,
            ))?;
            print(json, &out, |o| match &o.snapshot {
                Some(s) => println!(
                    "snapshot {} saved: {} files, {} bytes, {} bytes uploaded in {:.1}s{}",
                    s.short_id,
                    s.files,
                    s.bytes,
                    o.uploaded_bytes,
                    o.seconds,
                    if o.changed_during_read.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; {} files changed while read (snapshot again)",
                            o.changed_during_read.len()
                        )
                    }
                ),
                None => println!("nothing changed since the last snapshot"),
            });
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Snapshots { volume, direction } => {
            let s = spec(&cfg, &volume, direction)?;
            let repo = open(&s, &rt, false)?;
            let snaps = repo.snapshots()?;
            print(json, &snaps, |v| {
                println!(
                    "{:<10} {:<26} {:<10} {:>8} {:>14}  tags",
                    "id", "time", "host", "files", "bytes"
                );
                for s in v {
                    println!(
                        "{:<10} {:<26} {:<10} {:>8} {:>14}  {}",
                        s.short_id,
                        s.time,
                        s.host,
                        s.files,
                        s.bytes,
                        s.tags.join(",")
                    );
                }
                println!("{} snapshots", v.len());
            });
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Restore {
            volume,
            snapshot,
            path,
            target,
            delete,
            verify,
            dry_run,
            direction,
        } => {
            let s = spec(&cfg, &volume, direction)?;
            let sel = SnapshotSel::parse(&snapshot).map_err(anyhow::Error::msg)?;
            let repo = open(&s, &rt, false)?;
            let rep = repo.restore(&RestoreRequest {
                snapshot: sel,
                path,
                target: target.clone(),
                delete,
                verify,
                dry_run,
            })?;
            print(json, &rep, |r| {
                println!(
                    "{} snapshot {} ({}) to {}: {} files, {} bytes written; {} files already in place; {:.1}s",
                    if dry_run { "would restore" } else { "restored" },
                    r.snapshot.short_id,
                    r.snapshot.time,
                    target.display(),
                    r.files_restored,
                    r.bytes_restored,
                    r.files_unchanged,
                    r.seconds
                );
            });
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Activate {
            volume,
            no_catch_up,
            direction,
        } => {
            let s = spec(&cfg, &volume, direction)?;
            let rep = tandem_volume::activate(&s, rt.handle().clone(), !no_catch_up)?;
            print(json, &rep, |r| {
                println!(
                    "volume {} is live in {} ({:.2}s){}{}",
                    r.volume,
                    r.dir,
                    r.seconds,
                    r.data_age_seconds
                        .map(|a| format!(
                            "; data is {a:.1}s older than now (the RPO at activation)"
                        ))
                        .unwrap_or_default(),
                    if r.fenced {
                        "; the old primary is fenced"
                    } else {
                        ""
                    }
                );
                for n in &r.notes {
                    println!("note: {n}");
                }
            });
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check {
            volume,
            read_data,
            direction,
        } => {
            let s = spec(&cfg, &volume, direction)?;
            let repo = open(&s, &rt, false)?;
            let rep = repo.check(read_data)?;
            print(json, &rep, |r| {
                if r.ok {
                    println!(
                        "repository ok: {} snapshots ({:.1}s)",
                        r.snapshots, r.seconds
                    );
                } else {
                    println!("repository has problems:");
                    for p in &r.problems {
                        println!("  {p}");
                    }
                }
            });
            Ok(if rep.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Cmd::Prune { volume, direction } => {
            let s = spec(&cfg, &volume, direction)?;
            let Some(ret) = s.retention.clone() else {
                bail!("volume {volume} has no [retention] table; every snapshot is kept");
            };
            let repo = open(&s, &rt, false)?;
            let rep = repo.forget_and_prune(&ret, Duration::from_secs(3600))?;
            print(json, &rep, |r| {
                println!(
                    "kept {} snapshots, forgot {}; {} packs ({} bytes) removed or marked for removal",
                    r.kept.len(),
                    r.forgotten.len(),
                    r.packs_removed,
                    r.bytes_freed
                );
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(
    rt: &tokio::runtime::Runtime,
    agents: Vec<VolumeSpec>,
    standbys: Vec<VolumeSpec>,
    force: bool,
    admin: Option<AdminPlan>,
) -> anyhow::Result<ExitCode> {
    let status = Arc::new(Status::new());
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    rt.block_on(async {
        tokio::spawn(shutdown_signal(cancel.clone()));
        let admin_task = match admin {
            None => None,
            Some(plan) => {
                let mut metrics = prometheus_client::registry::Registry::default();
                status.register(&mut metrics);
                let component = tandem_volume::admin::VolumeComponent(status.clone());
                let admin = tandem_admin::Admin::new(
                    &plan.regions,
                    plan.token,
                    metrics,
                    vec![Arc::new(component)],
                );
                Some(admin.spawn(plan.addr, cancel.clone()).await?)
            }
        };
        for s in agents {
            let (status, cancel, failed) = (status.clone(), cancel.clone(), failed.clone());
            let opts = tandem_volume::AgentOptions {
                ignore_fence: force,
                once: false,
            };
            tracker.spawn(async move {
                if let Err(e) = tandem_volume::run_agent(Arc::new(s), status, opts, cancel).await {
                    tracing::error!(error = %e, "volume agent stopped");
                    failed.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        for s in standbys {
            let (status, cancel, failed) = (status.clone(), cancel.clone(), failed.clone());
            tracker.spawn(async move {
                if let Err(e) = tandem_volume::run_standby(Arc::new(s), status, cancel).await {
                    tracing::error!(error = %e, "volume standby stopped");
                    failed.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        tracker.close();
        // Status as a log line every 10s until everything has stopped.
        loop {
            tokio::select! {
                () = tracker.wait() => break,
                () = tokio::time::sleep(Duration::from_secs(10)) => {
                    tracing::info!(status = %status.json(), "volume status");
                }
            }
        }
        // Everything stopped (a signal, or every agent failed): so does the admin API.
        cancel.cancel();
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(if failed.load(std::sync::atomic::Ordering::SeqCst) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
