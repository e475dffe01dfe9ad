//! The warm standby: in the paired region, a directory kept restored to the newest snapshot,
//! incrementally (files whose size and modification time match are left alone; files gone
//! from the snapshot are removed). Activation is then a state change, not a restore: finish
//! the apply in flight, catch up to the newest snapshot if the repository has one, mark the
//! directory live, and write an activation marker into the repository that fences the old
//! primary's agent if its region comes back.
//!
//! Coordination between the standby loop and `activate` (possibly another process) goes
//! through the volume's state directory: an exclusive file lock held while applying, an
//! activation request file, and `standby.json` with the applied snapshot.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::agent::{open_repo, status_key};
use crate::error::VolumeError;
use crate::repo::{Repo, RestoreRequest, SnapshotInfo, SnapshotSel, TAG_ACTIVATED};
use crate::spec::VolumeSpec;
use crate::status::Status;

/// What the standby directory holds, persisted in `standby.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StandbyState {
    /// The snapshot applied last (complete).
    pub applied_id: Option<String>,
    /// Its time, ms since the epoch.
    pub applied_unix_ms: Option<i64>,
    /// When the standby was activated (ms since the epoch); the directory is live since.
    pub activated_unix_ms: Option<i64>,
}

fn standby_dir(spec: &VolumeSpec) -> Result<&crate::spec::StandbySpec, VolumeError> {
    spec.standby.as_ref().ok_or_else(|| VolumeError::Invalid {
        volume: spec.name.clone(),
        message: "no standby is configured (add [volume.volumes.NAME.standby] with dir)".into(),
    })
}

fn state_path(spec: &VolumeSpec) -> PathBuf {
    spec.state_dir.join("standby.json")
}

fn lock_path(spec: &VolumeSpec) -> PathBuf {
    spec.state_dir.join("standby.lock")
}

fn request_path(spec: &VolumeSpec) -> PathBuf {
    spec.state_dir.join("activate-requested")
}

/// Read the standby's persisted state.
pub fn load_state(spec: &VolumeSpec) -> StandbyState {
    std::fs::read(state_path(spec))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_state(spec: &VolumeSpec, st: &StandbyState) -> Result<(), VolumeError> {
    let p = state_path(spec);
    let tmp = p.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(st).map_err(|e| VolumeError::Internal(e.to_string()))?;
    std::fs::write(&tmp, body).map_err(|e| VolumeError::io("standby state", &tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| VolumeError::io("standby state", &p, e))
}

fn lock(spec: &VolumeSpec) -> Result<File, VolumeError> {
    std::fs::create_dir_all(&spec.state_dir)
        .map_err(|e| VolumeError::io("state directory", &spec.state_dir, e))?;
    let p = lock_path(spec);
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| VolumeError::io("standby lock", &p, e))?;
    f.lock()
        .map_err(|e| VolumeError::io("standby lock", &p, e))?;
    Ok(f)
}

fn now_ms() -> i64 {
    rustic_core::jiff::Timestamp::now().as_millisecond()
}

/// Bring the standby directory to the newest snapshot (blocking). Returns what was applied,
/// or `None` when it already held the newest.
pub fn apply_newest(
    repo: &Repo,
    spec: &VolumeSpec,
) -> Result<Option<(SnapshotInfo, crate::repo::RestoreReport)>, VolumeError> {
    let sb = standby_dir(spec)?;
    let _lock = lock(spec)?;
    let mut st = load_state(spec);
    if st.activated_unix_ms.is_some() {
        return Ok(None);
    }
    let snaps = repo.snapshots()?;
    // Activation markers carry the tree the standby already holds.
    let Some(newest) = snaps.iter().rev().find(|s| !s.activated) else {
        return Ok(None);
    };
    if st.applied_id.as_deref() == Some(newest.id.as_str()) && sb.dir.exists() {
        return Ok(None);
    }
    let report = repo.restore(&RestoreRequest {
        snapshot: SnapshotSel::Id(newest.id.clone()),
        path: String::new(),
        target: sb.dir.clone(),
        delete: true,
        verify: false,
        dry_run: false,
    })?;
    st.applied_id = Some(newest.id.clone());
    st.applied_unix_ms = Some(newest.unix_ms);
    save_state(spec, &st)?;
    Ok(Some((newest.clone(), report)))
}

/// Keep the standby directory restored to the newest snapshot until `cancel` fires or the
/// standby is activated.
pub async fn run_standby(
    spec: Arc<VolumeSpec>,
    status: Arc<Status>,
    cancel: CancellationToken,
) -> Result<(), VolumeError> {
    let sb = standby_dir(&spec)?.clone();
    let key = status_key(&spec);
    status.standby(&key, |s| {
        s.volume = spec.name.clone();
        s.region = sb.region.clone();
        s.dir = sb.dir.display().to_string();
        s.state = "waiting".into();
    });
    if let Some(at) = load_state(&spec).activated_unix_ms {
        status.standby(&key, |s| {
            s.state = "activated".into();
            s.activated_at = Some(ms_to_rfc3339(at));
        });
        return Err(VolumeError::Invalid {
            volume: spec.name.clone(),
            message: format!(
                "the standby in {} was activated at {}: it is the live volume now and is not overwritten (hint: `tandem volume reverse {}` replicates it back)",
                sb.region,
                ms_to_rfc3339(at),
                spec.name
            ),
        });
    }
    let repo = loop {
        let r = open_repo(&spec, false, &cancel, |e| {
            status.standby(&key, |s| {
                s.state = "retrying".into();
                s.last_error = Some(e.to_string());
            });
        })
        .await;
        match r {
            Ok(Some(r)) => break r,
            Ok(None) => return Ok(()),
            // No repository yet: the primary has not written its first snapshot.
            Err(VolumeError::NoSnapshot { message, .. }) => {
                status.standby(&key, |s| s.last_error = Some(message));
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = tokio::time::sleep(sb.poll_interval.max(Duration::from_millis(500))) => {}
                }
            }
            Err(e) => return Err(e),
        }
    };
    loop {
        if request_path(&spec).exists() || load_state(&spec).activated_unix_ms.is_some() {
            status.standby(&key, |s| s.state = "activated".into());
            return Ok(());
        }
        status.standby(&key, |s| s.state = "restoring".into());
        let (r, s2) = (repo.clone(), spec.clone());
        let t0 = Instant::now();
        let applied = tokio::task::spawn_blocking(move || apply_newest(&r, &s2))
            .await
            .map_err(|e| VolumeError::Internal(format!("standby task: {e}")))?;
        let st = load_state(&spec);
        let age = st
            .applied_unix_ms
            .map(|ms| (now_ms() - ms).max(0) as f64 / 1000.0);
        match applied {
            Ok(a) => {
                if let Some((snap, rep)) = &a {
                    status.count_apply(&spec.name, &sb.region);
                    tracing::info!(volume = %spec.name, snapshot = %snap.short_id, files = rep.files_restored,
                        seconds = t0.elapsed().as_secs_f64(), "standby applied snapshot");
                }
                status.standby(&key, |s| {
                    s.state = "current".into();
                    s.last_error = None;
                    s.data_age_seconds = age;
                    if let Some((snap, rep)) = a {
                        s.applied = Some(snap.clone());
                        s.newest = Some(snap);
                        s.last_apply_seconds = Some(rep.seconds);
                        s.last_apply_files = Some(rep.files_restored);
                    }
                });
            }
            Err(e) => {
                tracing::warn!(volume = %spec.name, error = %e, "standby apply failed; retrying");
                status.standby(&key, |s| {
                    s.state = "retrying".into();
                    s.last_error = Some(e.to_string());
                    s.data_age_seconds = age;
                });
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(sb.poll_interval) => {}
        }
    }
    status.standby(&key, |s| s.state = "stopped".into());
    Ok(())
}

/// What activation did.
#[derive(Debug, Clone, Serialize)]
pub struct ActivateReport {
    /// The volume.
    pub volume: String,
    /// The live directory.
    pub dir: String,
    /// The snapshot the directory holds.
    pub snapshot: Option<SnapshotInfo>,
    /// Whether a final catch-up restore ran (the repository had a newer snapshot).
    pub caught_up: bool,
    /// Whether the activation marker was written into the repository (it fences the old
    /// primary); false when the repository was unreachable.
    pub fenced: bool,
    /// How old the data is: activation time minus the snapshot's time, seconds.
    pub data_age_seconds: Option<f64>,
    /// How long activation took.
    pub seconds: f64,
    /// Notes for the operator.
    pub notes: Vec<String>,
}

/// Make the standby the live volume (blocking): stop the standby loop, finish the apply in
/// flight, catch up to the newest snapshot if the repository is reachable, mark it live, and
/// fence the old primary.
pub fn activate(
    spec: &VolumeSpec,
    rt: tokio::runtime::Handle,
    catch_up: bool,
) -> Result<ActivateReport, VolumeError> {
    let t0 = Instant::now();
    let sb = standby_dir(spec)?.clone();
    std::fs::create_dir_all(&spec.state_dir)
        .map_err(|e| VolumeError::io("state directory", &spec.state_dir, e))?;
    let req = request_path(spec);
    std::fs::write(&req, b"").map_err(|e| VolumeError::io("activation request", &req, e))?;
    let mut notes = Vec::new();
    let mut caught_up = false;
    let mut fenced = false;

    let repo = match Repo::open(spec, rt, None, false) {
        Ok(r) => Some(r),
        Err(e) => {
            notes.push(format!(
                "repository not reachable, activating with what the standby holds: {e}"
            ));
            None
        }
    };
    if catch_up && let Some(repo) = &repo {
        // Takes the lock, so it also waits for an apply in flight.
        match apply_newest(repo, spec) {
            Ok(Some(_)) => caught_up = true,
            Ok(None) => {}
            Err(e) => notes.push(format!(
                "final catch-up failed, activating with what the standby holds: {e}"
            )),
        }
    }
    let _lock = lock(spec)?;
    let mut st = load_state(spec);
    if st.applied_id.is_none() {
        notes.push("the standby never applied a snapshot: the directory may be empty".into());
    }
    let at = now_ms();
    st.activated_unix_ms.get_or_insert(at);
    save_state(spec, &st)?;
    let _ = std::fs::remove_file(&req);

    let mut snapshot = None;
    if let Some(repo) = &repo
        && let Some(id) = &st.applied_id
    {
        match write_marker(repo, spec, &sb.region, id) {
            Ok(info) => {
                fenced = true;
                snapshot = Some(info);
            }
            Err(e) => notes.push(format!(
                "could not write the activation marker (the old primary is not fenced): {e}"
            )),
        }
    }
    Ok(ActivateReport {
        volume: spec.name.clone(),
        dir: sb.dir.display().to_string(),
        snapshot,
        caught_up,
        fenced,
        data_age_seconds: st
            .applied_unix_ms
            .map(|ms| (at - ms).max(0) as f64 / 1000.0),
        seconds: t0.elapsed().as_secs_f64(),
        notes,
    })
}

/// Save an activation marker: a snapshot of the same tree as the applied one, tagged
/// `tandem-activated`, with the standby's region as host. restic lists it like any snapshot.
fn write_marker(
    repo: &Repo,
    spec: &VolumeSpec,
    region: &str,
    applied: &str,
) -> Result<SnapshotInfo, VolumeError> {
    let base = repo.select(&SnapshotSel::Id(applied.to_string()))?;
    let mut marker = base.clone();
    marker.time = rustic_core::jiff::Zoned::now();
    marker.hostname = region.to_string();
    marker.parent = Some(base.id);
    marker.parents = vec![base.id];
    marker.id = Default::default();
    marker.description = Some(format!(
        "standby of volume {} activated in {region}; the source region's copy is stale from here",
        spec.name
    ));
    let tag: rustic_core::StringList = TAG_ACTIVATED
        .parse()
        .map_err(|e| VolumeError::Internal(format!("tag: {e}")))?;
    let _ = marker.add_tags(vec![tag]);
    repo.inner
        .save_snapshots(vec![marker])
        .map_err(|e| repo.err("write activation marker", &e))?;
    repo.snapshots()?
        .into_iter()
        .rev()
        .find(|s| s.activated)
        .ok_or_else(|| VolumeError::Internal("activation marker not listed after writing".into()))
}

fn ms_to_rfc3339(ms: i64) -> String {
    rustic_core::jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Whether the forward standby of this volume was activated (reverse replication needs it).
pub fn is_activated(spec: &VolumeSpec) -> bool {
    load_state(spec).activated_unix_ms.is_some()
}
