//! The replication agent of one volume: watches the directory (inotify through `notify`, plus
//! a periodic full scan as a safety net), takes a snapshot at most every `interval` while
//! changes are pending, retries with backoff when the repository is unreachable, applies
//! retention, and keeps the replication lag current.
//!
//! Lag accounting: `pending_since` is the time of the oldest change not covered by a written
//! snapshot. A snapshot covers every change seen before it started; changes seen while it runs
//! stay pending. A failed snapshot leaves its changes pending, so the lag keeps growing while
//! the link is down — which is exactly the data a failure would lose.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::VolumeError;
use crate::repo::Repo;
use crate::snapshot::{SnapshotFlags, snapshot_with_hooks};
use crate::spec::VolumeSpec;
use crate::status::Status;

/// Options of a running agent.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Replicate even though the volume was activated in the other region (only for the first
    /// snapshot; it clears the fence).
    pub ignore_fence: bool,
    /// Stop after the first successful snapshot (used by `tandem volume snapshot`).
    pub once: bool,
}

/// The key of a volume in [`Status`].
pub fn status_key(spec: &VolumeSpec) -> String {
    format!("{}/{}", spec.name, spec.direction.as_str())
}

fn rfc3339(t: SystemTime) -> String {
    rustic_core::jiff::Timestamp::try_from(t)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Open (creating if needed) the volume's repository, retrying while it is unreachable.
pub async fn open_repo(
    spec: &Arc<VolumeSpec>,
    create: bool,
    cancel: &CancellationToken,
    mut on_error: impl FnMut(&VolumeError),
) -> Result<Option<Arc<Repo>>, VolumeError> {
    let mut backoff = Duration::from_millis(500);
    loop {
        let s = spec.clone();
        let rt = tokio::runtime::Handle::current();
        let r = tokio::task::spawn_blocking(move || Repo::open(&s, rt, None, create))
            .await
            .map_err(|e| VolumeError::Internal(format!("open task: {e}")))?;
        match r {
            Ok(repo) => return Ok(Some(Arc::new(repo))),
            Err(e) if e.is_retryable() => {
                on_error(&e);
                tokio::select! {
                    () = cancel.cancelled() => return Ok(None),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Run the replication agent of one volume until `cancel` fires. A snapshot in progress at
/// shutdown is abandoned cleanly (nothing partial becomes visible; uploaded data is reused).
pub async fn run_agent(
    spec: Arc<VolumeSpec>,
    status: Arc<Status>,
    opts: AgentOptions,
    cancel: CancellationToken,
) -> Result<(), VolumeError> {
    let key = status_key(&spec);
    let alert_after = spec.lag_alert.as_secs_f64();
    status.agent(&key, |s| {
        s.volume = spec.name.clone();
        s.direction = spec.direction.as_str().into();
        s.region = spec.source_region.clone();
        s.repository = crate::store::redact(&spec.repository.location);
        s.state = "starting".into();
        s.lag_alert_seconds = alert_after;
    });

    // Watch before the first snapshot so that nothing written during it is missed.
    let (tx, mut rx) = mpsc::channel::<SystemTime>(1024);
    let watcher = {
        let tx = tx.clone();
        let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res
                && !matches!(ev.kind, EventKind::Access(_))
            {
                let _ = tx.try_send(SystemTime::now());
            }
        })
        .and_then(|mut w| {
            w.watch(&spec.source, RecursiveMode::Recursive)?;
            Ok(w)
        });
        match &mut w {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(volume = %spec.name, error = %e, "inotify watch failed; relying on periodic scans")
            }
        }
        w.ok()
    };
    status.agent(&key, |s| s.watching = watcher.is_some());

    let start = SystemTime::now();
    let repo = match open_repo(&spec, true, &cancel, |e| {
        tracing::warn!(volume = %spec.name, error = %e, "repository not reachable; retrying");
        let lag = start.elapsed().unwrap_or_default().as_secs_f64();
        status.agent(&key, |s| {
            s.state = "retrying".into();
            s.last_error = Some(e.to_string());
            s.pending_since = Some(rfc3339(start));
            s.lag_seconds = lag;
            s.alert = lag > alert_after;
        });
    })
    .await?
    {
        Some(r) => r,
        None => {
            status.agent(&key, |s| s.state = "stopped".into());
            return Ok(());
        }
    };

    // The state of the directory at start is unknown: it is pending from now.
    let mut pending_since: Option<SystemTime> = Some(start);
    let mut scan_due = false;
    let mut last_start: Option<Instant> = None;
    let mut next_scan = Instant::now() + spec.scan_interval;
    let mut wait = spec.interval;
    let mut last_prune = Instant::now();
    let mut ignore_fence = opts.ignore_fence;
    let tick = Duration::from_millis(100);

    let update_lag = |pending: Option<SystemTime>, status: &Status| {
        let lag = pending
            .and_then(|p| p.elapsed().ok())
            .map_or(0.0, |d| d.as_secs_f64());
        status.agent(&key, |s| {
            s.lag_seconds = lag;
            s.alert = lag > alert_after;
            s.pending_since = pending.map(rfc3339);
        });
    };

    loop {
        update_lag(pending_since, &status);
        tokio::select! {
            () = cancel.cancelled() => break,
            ev = rx.recv() => {
                if let Some(t) = ev && pending_since.is_none() {
                    pending_since = Some(t);
                }
            }
            () = tokio::time::sleep(tick) => {}
        }
        // A busy directory sends events faster than ticks: drain them so a snapshot can start.
        while let Ok(t) = rx.try_recv() {
            pending_since.get_or_insert(t);
        }
        if Instant::now() >= next_scan {
            scan_due = true;
            next_scan = Instant::now() + spec.scan_interval;
        }
        let due =
            (pending_since.is_some() || scan_due) && last_start.is_none_or(|t| t.elapsed() >= wait);
        if !due {
            continue;
        }

        // Take a snapshot; keep tracking changes while it runs.
        let covered = pending_since.take();
        scan_due = false;
        let started = SystemTime::now();
        last_start = Some(Instant::now());
        status.agent(&key, |s| s.state = "snapshotting".into());
        let snap_cancel = cancel.child_token();
        let flags = SnapshotFlags { ignore_fence };
        let mut task = tokio::spawn(snapshot_with_hooks(
            repo.clone(),
            spec.clone(),
            flags,
            snap_cancel.clone(),
        ));
        let result = loop {
            update_lag(pending_since.or(covered), &status);
            tokio::select! {
                r = &mut task => break r.map_err(|e| VolumeError::Internal(format!("snapshot task: {e}")))
                    .and_then(|r| r),
                ev = rx.recv() => {
                    if let Some(t) = ev && pending_since.is_none() {
                        pending_since = Some(t);
                    }
                }
                () = tokio::time::sleep(tick) => {}
            }
        };
        let dir = spec.direction.as_str();
        match result {
            Ok(out) => {
                ignore_fence = false;
                wait = spec.interval;
                let retry = !out.changed_during_read.is_empty() || !out.unreadable.is_empty();
                if retry {
                    // Read again next interval: what changed under the reader is still pending.
                    let since = covered.unwrap_or(started);
                    pending_since = Some(pending_since.map_or(since, |p| p.min(since)));
                }
                let result = if out.snapshot.is_some() {
                    "written"
                } else {
                    "unchanged"
                };
                status.count_snapshot(&spec.name, dir, result, out.uploaded_bytes, out.seconds);
                tracing::info!(volume = %spec.name, direction = dir, result, seconds = out.seconds,
                    uploaded = out.uploaded_bytes, changed_during_read = out.changed_during_read.len(), "snapshot");
                status.agent(&key, |s| {
                    s.state = "idle".into();
                    s.last_error = None;
                    if let Some(snap) = &out.snapshot {
                        s.last_snapshot = Some(snap.clone());
                        s.snapshots += 1;
                    }
                    s.last_snapshot_seconds = Some(out.seconds);
                    s.uploaded_bytes += out.uploaded_bytes;
                    s.changed_during_read = out.changed_during_read.clone();
                    s.unreadable = out.unreadable.clone();
                });
                if opts.once {
                    break;
                }
                if let Some(ret) = &spec.retention
                    && last_prune.elapsed() >= ret.prune_interval
                {
                    last_prune = Instant::now();
                    let (r, ret) = (repo.clone(), ret.clone());
                    let pr = tokio::task::spawn_blocking(move || {
                        r.forget_and_prune(&ret, Duration::from_secs(3600))
                    })
                    .await;
                    match pr {
                        Ok(Ok(rep)) => tracing::info!(volume = %spec.name, kept = rep.kept.len(),
                            forgotten = rep.forgotten.len(), freed = rep.bytes_freed, "retention applied"),
                        Ok(Err(e)) => {
                            tracing::warn!(volume = %spec.name, error = %e, "retention failed")
                        }
                        Err(e) => {
                            tracing::warn!(volume = %spec.name, error = %e, "retention task failed")
                        }
                    }
                }
            }
            Err(VolumeError::Abandoned { .. }) => {
                pending_since = min_time(pending_since, covered);
                status.count_snapshot(&spec.name, dir, "abandoned", 0, 0.0);
                break;
            }
            Err(e @ VolumeError::Fenced { .. }) => {
                status.agent(&key, |s| {
                    s.state = "fenced".into();
                    s.last_error = Some(e.to_string());
                });
                return Err(e);
            }
            Err(e) => {
                pending_since = min_time(pending_since, covered.or(Some(started)));
                status.count_snapshot(&spec.name, dir, "failed", 0, 0.0);
                tracing::warn!(volume = %spec.name, error = %e, retry_in = ?wait, "snapshot failed");
                status.agent(&key, |s| {
                    s.state = "retrying".into();
                    s.failures += 1;
                    s.last_error = Some(e.to_string());
                });
                if !e.is_retryable() {
                    return Err(e);
                }
                wait = (wait * 2).clamp(spec.interval, Duration::from_secs(60).max(spec.interval));
            }
        }
    }
    drop(watcher);
    update_lag(pending_since, &status);
    status.agent(&key, |s| s.state = "stopped".into());
    Ok(())
}

fn min_time(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
