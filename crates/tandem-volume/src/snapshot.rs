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

use rustic_core::repofile::{SnapshotFile, SnapshotId};
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

    // The snapshot's time is taken before the fence is read: an activation marker that the
    // read below does not see yet is saved later with a later time, so this snapshot can
    // never sort after it (which would hide the fence from every later attempt).
    let snap = SnapshotOptions::default()
        .label(name.to_string())
        .host(spec.source_region.clone())
        .add_tags(TAG)
        .and_then(|o| o.to_snapshot())
        .map_err(|e| repo.err("prepare snapshot", &e))?;
    // Fence: once the standby was activated in the other region, this copy is stale.
    let snaps = repo.snapshot_files()?;
    if !flags.ignore_fence
        && let Some(last) = snaps.last()
        && is_activation(last)
    {
        return Err(fenced(name, last));
    }
    let known_activations: Vec<_> = snaps
        .iter()
        .filter(|s| is_activation(s))
        .map(|s| s.id)
        .collect();

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
            // An activation saved while this snapshot was taken: this copy was fenced
            // meanwhile. The snapshot is removed again so that the marker stays the newest
            // (and every later attempt, here or after a restart, sees the fence).
            if written && !flags.ignore_fence {
                let now = repo.snapshot_files()?;
                if let Some(a) = new_activation(&now, &known_activations) {
                    let err = fenced(name, a);
                    repo.inner
                        .delete_snapshots(&[s.id])
                        .map_err(|e| repo.err("remove the snapshot an activation overtook", &e))?;
                    return Err(err);
                }
            }
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

fn is_activation(s: &SnapshotFile) -> bool {
    s.tags.iter().any(|t| t == TAG_ACTIVATED)
}

fn fenced(volume: &str, marker: &SnapshotFile) -> VolumeError {
    VolumeError::Fenced {
        volume: volume.into(),
        region: marker.hostname.clone(),
        at: marker.time.timestamp().to_string(),
    }
}

/// An activation marker in `snaps` that was not among `known` (the ones there when a
/// snapshot began).
fn new_activation<'a>(snaps: &'a [SnapshotFile], known: &[SnapshotId]) -> Option<&'a SnapshotFile> {
    snaps
        .iter()
        .rev()
        .find(|s| is_activation(s) && !known.contains(&s.id))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(n: u8, activated: bool) -> SnapshotFile {
        let mut s = SnapshotFile {
            id: format!("{n:064x}").parse().expect("id"),
            ..SnapshotFile::default()
        };
        if activated {
            s.tags = TAG_ACTIVATED.parse().expect("tag");
        }
        s
    }

    /// The fence check after a snapshot is written: only a marker that was not there when
    /// the snapshot began fences it (an old failover's marker, already behind newer
    /// snapshots, does not).
    #[test]
    fn only_an_activation_saved_during_the_snapshot_is_new() {
        let before = vec![snap(1, false), snap(2, true), snap(3, false)];
        let known: Vec<_> = before
            .iter()
            .filter(|s| is_activation(s))
            .map(|s| s.id)
            .collect();
        assert!(new_activation(&before, &known).is_none());
        let mut after = before.clone();
        after.push(snap(4, false));
        assert!(new_activation(&after, &known).is_none(), "our own snapshot");
        after.insert(3, snap(5, true));
        let found = new_activation(&after, &known).expect("the new marker");
        assert_eq!(found.id, snap(5, true).id);
        assert!(matches!(fenced("data", found), VolumeError::Fenced { .. }));
    }
}
