//! One snapshot of a volume: hooks around it, resume after an interrupted one, the fence
//! against a volume that was activated elsewhere, and the record of files that changed while
//! they were read.
//!
//! The order of writes makes a snapshot all-or-nothing: packs, then the index that names them
//! (the store's barrier waits for every pack), then the snapshot file that names the tree.
//! A crash before the snapshot file leaves no snapshot, only data the next run reuses.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rustic_core::{BackupOptions, RepairIndexOptions, SnapshotOptions};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::VolumeError;
use crate::repo::{Repo, SnapshotInfo, TAG, TAG_ACTIVATED};
use crate::source::{FileIssue, ReadLog, VolumeSource};
use crate::spec::VolumeSpec;

/// What one snapshot attempt did.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotOutcome {
    /// The snapshot written; `None` when nothing had changed since the last one.
    pub snapshot: Option<SnapshotInfo>,
    /// Files that changed while they were read (the agent snapshots again at once).
    pub changed_during_read: Vec<FileIssue>,
    /// Files that could not be read and are missing from this snapshot.
    pub unreadable: Vec<FileIssue>,
    /// Whether an interrupted earlier attempt was resumed (its uploaded packs adopted).
    pub resumed: bool,
    /// Bytes sent to the repository.
    pub uploaded_bytes: u64,
    /// How long it took.
    pub seconds: f64,
}

/// Per-attempt switches.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFlags {
    /// Snapshot even if the newest snapshot is an activation marker from the other region.
    pub ignore_fence: bool,
}

fn marker(spec: &VolumeSpec) -> PathBuf {
    spec.state_dir.join("snapshot-in-progress")
}

/// Take one snapshot now (blocking). Hooks are run by [`snapshot_with_hooks`].
pub fn take_snapshot(
    repo: &Repo,
    spec: &VolumeSpec,
    flags: &SnapshotFlags,
    cancel: &CancellationToken,
) -> Result<SnapshotOutcome, VolumeError> {
    let t0 = Instant::now();
    let name = spec.name.as_str();
    match std::fs::metadata(&spec.source) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(VolumeError::Invalid {
                volume: name.into(),
                message: format!("source {} is not a directory", spec.source.display()),
            });
        }
        Err(e) => return Err(VolumeError::io("source directory", &spec.source, e)),
    }
    std::fs::create_dir_all(&spec.state_dir)
        .map_err(|e| VolumeError::io("state directory", &spec.state_dir, e))?;
    let uploaded0 = repo.stats().uploaded_bytes.load(Ordering::Relaxed);

    // Fence: once the standby was activated in the other region, this copy is stale.
    let snaps = repo.snapshot_files()?;
    if !flags.ignore_fence
        && let Some(last) = snaps.last()
        && last.tags.iter().any(|t| t == TAG_ACTIVATED)
    {
        return Err(VolumeError::Fenced {
            volume: name.into(),
            region: last.hostname.clone(),
            at: last.time.timestamp().to_string(),
        });
    }

    // Resume: an earlier attempt died after uploading packs but before indexing them. Index
    // them now (reading only their headers) so that their data is not sent again.
    let mark = marker(spec);
    let resumed = mark.exists();
    if resumed {
        let open = repo.reopen()?;
        open.repair_index(&RepairIndexOptions::default(), false)
            .map_err(|e| repo.err("adopt packs of the interrupted snapshot", &e))?;
    }
    std::fs::write(&mark, b"").map_err(|e| VolumeError::io("state file", &mark, e))?;

    let indexed = repo
        .reopen()?
        .to_indexed_ids()
        .map_err(|e| repo.err("read index", &e))?;
    let snap = SnapshotOptions::default()
        .label(name.to_string())
        .host(spec.source_region.clone())
        .add_tags(TAG)
        .and_then(|o| o.to_snapshot())
        .map_err(|e| repo.err("prepare snapshot", &e))?;
    let mut opts = BackupOptions::default().as_path(PathBuf::from("/"));
    opts.parent_opts.group_by = "label".parse().ok();
    opts.parent_opts.skip_if_unchanged = true;
    opts.no_scan = true;

    let log = Arc::new(ReadLog::default());
    let src = VolumeSource::new(
        &spec.source,
        &spec.exclude,
        cancel.clone(),
        log.clone(),
        repo.store.fence_flag(),
    )
    .map_err(|e| repo.err("read source", &e))?;
    // If shutdown is requested mid-walk, the walker stops and raises the store's fence, which
    // keeps the partial tree from being written as a snapshot.
    repo.store.set_fence(false);
    let result = indexed.archive(&opts, &src, snap, std::slice::from_ref(&spec.source));
    let abandoned = log.abandoned.load(Ordering::SeqCst);
    let uploaded_bytes = repo
        .stats()
        .uploaded_bytes
        .load(Ordering::Relaxed)
        .saturating_sub(uploaded0);
    match result {
        Ok(_) if abandoned => {
            repo.store.set_fence(false);
            Err(VolumeError::Abandoned {
                volume: name.into(),
            })
        }
        Ok(s) => {
            let _ = std::fs::remove_file(&mark);
            let written = s.id != Default::default();
            Ok(SnapshotOutcome {
                snapshot: written.then(|| SnapshotInfo::from_file(&s)),
                changed_during_read: ReadLog::take(&log.changed),
                unreadable: ReadLog::take(&log.unreadable),
                resumed,
                uploaded_bytes,
                seconds: t0.elapsed().as_secs_f64(),
            })
        }
        Err(_) if abandoned => {
            repo.store.set_fence(false);
            Err(VolumeError::Abandoned {
                volume: name.into(),
            })
        }
        Err(e) => Err(repo.err("snapshot", &e)),
    }
}

/// Run a hook command with a timeout.
pub async fn run_hook(
    spec: &VolumeSpec,
    which: &'static str,
    argv: &[String],
) -> Result<(), VolumeError> {
    let fail = |message: String| VolumeError::Hook {
        volume: spec.name.clone(),
        which,
        command: argv.join(" "),
        message,
    };
    let Some((cmd, args)) = argv.split_first() else {
        return Ok(());
    };
    let mut child = tokio::process::Command::new(cmd)
        .args(args)
        .env("TANDEM_VOLUME", &spec.name)
        .env("TANDEM_VOLUME_SOURCE", &spec.source)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}")))?;
    match tokio::time::timeout(spec.hooks.timeout, child.wait()).await {
        Ok(Ok(st)) if st.success() => Ok(()),
        Ok(Ok(st)) => Err(fail(format!("exited with {st}"))),
        Ok(Err(e)) => Err(fail(format!("failed: {e}"))),
        Err(_) => {
            let _ = child.kill().await;
            Err(fail(format!(
                "did not finish within {:?} and was killed",
                spec.hooks.timeout
            )))
        }
    }
}

/// Pre-hook, snapshot, post-hook. The post-hook runs whenever the pre-hook succeeded.
pub async fn snapshot_with_hooks(
    repo: Arc<Repo>,
    spec: Arc<VolumeSpec>,
    flags: SnapshotFlags,
    cancel: CancellationToken,
) -> Result<SnapshotOutcome, VolumeError> {
    if let Some(pre) = &spec.hooks.pre {
        run_hook(&spec, "pre", pre).await?;
    }
    let (r2, s2) = (repo.clone(), spec.clone());
    let result = tokio::task::spawn_blocking(move || take_snapshot(&r2, &s2, &flags, &cancel))
        .await
        .map_err(|e| VolumeError::Internal(format!("snapshot task: {e}")))?;
    if let Some(post) = &spec.hooks.post {
        let post_result = run_hook(&spec, "post", post).await;
        if result.is_ok() {
            post_result?;
        }
    }
    result
}
