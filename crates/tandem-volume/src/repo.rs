//! An open restic-format repository of one volume: list, select, restore, check, forget and
//! prune. All calls block (rustic is synchronous); async callers use `spawn_blocking`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustic_core::repofile::SnapshotFile;
use rustic_core::{
    CheckOptions, ConfigOptions, Credentials, KeepOptions, KeyOptions, LocalDestination, LsOptions,
    OpenStatus, PruneOptions, Repository, RepositoryBackends, RepositoryOptions, RestoreOptions,
    StringList, WriteBackend,
};
use serde::Serialize;
use tokio::runtime::Handle;

use crate::error::VolumeError;
use crate::progress::{Bars, ProgressSink, Quiet};
use crate::spec::VolumeSpec;
use crate::store::{Store, StoreStats};

/// The tag every Tandem snapshot carries.
pub const TAG: &str = "tandem";
/// The tag of the snapshot written when a standby is activated: it fences the old primary.
pub const TAG_ACTIVATED: &str = "tandem-activated";

/// A snapshot, as listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotInfo {
    /// Full id.
    pub id: String,
    /// The first 8 hex digits, as restic prints them.
    pub short_id: String,
    /// When the snapshot was started (RFC 3339).
    pub time: String,
    /// The same, in milliseconds since the epoch.
    pub unix_ms: i64,
    /// The host field: the region that wrote it.
    pub host: String,
    /// The label: the volume's name.
    pub label: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Files in the snapshot.
    pub files: u64,
    /// Bytes of file content in the snapshot.
    pub bytes: u64,
    /// Bytes this snapshot added to the repository (before compression).
    pub data_added: u64,
    /// Bytes this snapshot added, as stored (compressed).
    pub data_added_packed: u64,
    /// New and changed files.
    pub files_changed: u64,
    /// Whether this is an activation marker (the standby was made live from this state).
    pub activated: bool,
}

impl SnapshotInfo {
    pub(crate) fn from_file(s: &SnapshotFile) -> Self {
        let id = s.id.to_hex().to_string();
        let tags: Vec<String> = s.tags.iter().cloned().collect();
        let sum = s.summary.as_ref();
        SnapshotInfo {
            short_id: id.chars().take(8).collect(),
            id,
            time: s.time.timestamp().to_string(),
            unix_ms: s.time.timestamp().as_millisecond(),
            host: s.hostname.clone(),
            label: s.label.clone(),
            activated: tags.iter().any(|t| t == TAG_ACTIVATED),
            tags,
            files: sum.map_or(0, |s| s.total_files_processed),
            bytes: sum.map_or(0, |s| s.total_bytes_processed),
            data_added: sum.map_or(0, |s| s.data_added),
            data_added_packed: sum.map_or(0, |s| s.data_added_packed),
            files_changed: sum.map_or(0, |s| s.files_new + s.files_changed),
        }
    }
}

/// Which snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotSel {
    /// The newest.
    Latest,
    /// By id or unique id prefix.
    Id(String),
    /// The newest taken at or before this time (point-in-time restore).
    At(rustic_core::jiff::Timestamp),
}

impl SnapshotSel {
    /// Parse `latest`, an id prefix, or an RFC 3339 time / `YYYY-MM-DD HH:MM:SS` (UTC).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s == "latest" {
            return Ok(SnapshotSel::Latest);
        }
        if s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(SnapshotSel::Id(s.to_ascii_lowercase()));
        }
        if let Ok(t) = s.parse::<rustic_core::jiff::Timestamp>() {
            return Ok(SnapshotSel::At(t));
        }
        if let Ok(dt) = s.parse::<rustic_core::jiff::civil::DateTime>()
            && let Ok(z) = dt.to_zoned(rustic_core::jiff::tz::TimeZone::UTC)
        {
            return Ok(SnapshotSel::At(z.timestamp()));
        }
        Err(format!(
            "{s:?} is neither `latest`, a snapshot id nor a time (write 2024-05-01T12:00:00Z)"
        ))
    }
}

/// What to restore, and where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// Which snapshot.
    pub snapshot: SnapshotSel,
    /// A path inside the snapshot (`""` or `/` for all of it).
    pub path: String,
    /// The target directory (or file, when `path` names a file).
    pub target: PathBuf,
    /// Remove what is in the target but not in the snapshot.
    pub delete: bool,
    /// Read and compare existing files instead of trusting size and modification time.
    pub verify: bool,
    /// Only compute what would be done.
    pub dry_run: bool,
}

/// The result of a restore.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot: SnapshotInfo,
    /// Files written.
    pub files_restored: u64,
    /// Files already identical.
    pub files_unchanged: u64,
    /// Bytes written.
    pub bytes_restored: u64,
    /// Bytes already in place.
    pub bytes_unchanged: u64,
    /// How long it took.
    pub seconds: f64,
}

/// The result of a check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Whether the repository is sound.
    pub ok: bool,
    /// Problems found (empty when ok).
    pub problems: Vec<String>,
    /// Snapshots in the repository.
    pub snapshots: usize,
    /// How long it took.
    pub seconds: f64,
}

/// The result of forget and prune.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PruneReport {
    /// Snapshots kept.
    pub kept: Vec<String>,
    /// Snapshots forgotten.
    pub forgotten: Vec<String>,
    /// Pack files removed or marked for removal.
    pub packs_removed: u64,
    /// Bytes freed (or marked to be freed once no reader can need them).
    pub bytes_freed: u64,
}

/// An open repository of one volume.
#[derive(Debug)]
pub struct Repo {
    pub(crate) inner: Repository<OpenStatus>,
    key: rustic_core::repofile::MasterKey,
    progress: Arc<dyn ProgressSink>,
    pub(crate) store: Arc<Store>,
    pub(crate) volume: String,
    pub(crate) created: bool,
}

impl Repo {
    /// Open the volume's repository; with `create`, initialise it when it does not exist yet
    /// (repository format 2, zstd at the volume's level). `rt` runs the storage I/O.
    pub fn open(
        spec: &VolumeSpec,
        rt: Handle,
        progress: Option<Arc<dyn ProgressSink>>,
        create: bool,
    ) -> Result<Repo, VolumeError> {
        let password = spec.password()?;
        let store = Arc::new(Store::open(&spec.repository, spec.tuning, rt)?);
        Self::open_store(spec, store, &password, progress, create)
    }

    /// Open a repository over a given store.
    pub fn open_store(
        spec: &VolumeSpec,
        store: Arc<Store>,
        password: &str,
        progress: Option<Arc<dyn ProgressSink>>,
        create: bool,
    ) -> Result<Repo, VolumeError> {
        let name = spec.name.as_str();
        store.sweep_staging();
        let be: Arc<dyn WriteBackend> = store.clone();
        let backends = RepositoryBackends::new(be, None);
        let opts = RepositoryOptions::default().no_cache(true);
        let progress = progress.unwrap_or_else(|| Arc::new(Quiet));
        let repo = Repository::new_with_progress(&opts, &backends, Bars(progress.clone()))
            .map_err(|e| VolumeError::rustic(name, "open", &e))?;
        let creds = Credentials::password(password);
        let exists = repo
            .config_id()
            .map_err(|e| VolumeError::rustic(name, "open", &e))?
            .is_some();
        let (inner, created) = if exists {
            let r = repo.open(&creds).map_err(|e| {
                if e.is_incorrect_password() {
                    VolumeError::WrongPassword {
                        volume: name.to_string(),
                        location: store.location_name().to_string(),
                    }
                } else {
                    VolumeError::rustic(name, "open", &e)
                }
            })?;
            (r, false)
        } else if create {
            let config = ConfigOptions::default()
                .set_version(2u32)
                .set_compression(spec.compression);
            let r = repo
                .init(&creds, &KeyOptions::default(), &config)
                .map_err(|e| VolumeError::rustic(name, "initialise", &e))?;
            (r, true)
        } else {
            return Err(VolumeError::NoSnapshot {
                volume: name.to_string(),
                message: format!(
                    "there is no repository at {} yet (hint: start `tandem volume run` in {} to create it, or check the location)",
                    store.location_name(),
                    spec.source_region
                ),
            });
        };
        Ok(Repo {
            key: inner.key(),
            inner,
            progress,
            store,
            volume: name.to_string(),
            created,
        })
    }

    /// Whether `open` created the repository.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The storage counters.
    pub fn stats(&self) -> Arc<StoreStats> {
        self.store.stats()
    }

    /// The storage.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A fresh handle on the open repository (rustic's typestate consumes it to index).
    pub(crate) fn reopen(&self) -> Result<Repository<OpenStatus>, VolumeError> {
        let be: Arc<dyn WriteBackend> = self.store.clone();
        let backends = RepositoryBackends::new(be, None);
        let opts = RepositoryOptions::default().no_cache(true);
        Repository::new_with_progress(&opts, &backends, Bars(self.progress.clone()))
            .and_then(|r| r.open(&Credentials::Masterkey(self.key.clone())))
            .map_err(|e| self.err("open", &e))
    }

    pub(crate) fn err(&self, op: &'static str, e: &rustic_core::RusticError) -> VolumeError {
        VolumeError::rustic(&self.volume, op, e)
    }

    /// This volume's snapshots, oldest first.
    pub fn snapshot_files(&self) -> Result<Vec<SnapshotFile>, VolumeError> {
        let label = self.volume.clone();
        let mut snaps = self
            .inner
            .get_matching_snapshots(|s| s.label == label)
            .map_err(|e| self.err("list snapshots", &e))?;
        snaps.sort_by_key(|s| s.time.timestamp());
        Ok(snaps)
    }

    /// This volume's snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, VolumeError> {
        Ok(self
            .snapshot_files()?
            .iter()
            .map(SnapshotInfo::from_file)
            .collect())
    }

    /// The snapshot a selector names.
    pub fn select(&self, sel: &SnapshotSel) -> Result<SnapshotFile, VolumeError> {
        let snaps = self.snapshot_files()?;
        let none = |message: String| VolumeError::NoSnapshot {
            volume: self.volume.clone(),
            message,
        };
        match sel {
            SnapshotSel::Latest => snaps
                .into_iter()
                .next_back()
                .ok_or_else(|| none("the repository has no snapshot of this volume yet".into())),
            SnapshotSel::Id(prefix) => {
                let mut m: Vec<_> = snaps
                    .into_iter()
                    .filter(|s| s.id.to_hex().starts_with(prefix.as_str()))
                    .collect();
                match m.len() {
                    0 => Err(none(format!(
                        "no snapshot id starts with {prefix:?} (hint: `tandem volume snapshots` lists them)"
                    ))),
                    1 => Ok(m.remove(0)),
                    n => Err(none(format!(
                        "{n} snapshots start with {prefix:?}; give more digits"
                    ))),
                }
            }
            SnapshotSel::At(t) => snaps
                .into_iter()
                .rfind(|s| s.time.timestamp() <= *t)
                .ok_or_else(|| none(format!("no snapshot was taken at or before {t}"))),
        }
    }

    /// Restore a snapshot (or a path in it) into a directory.
    pub fn restore(&self, req: &RestoreRequest) -> Result<RestoreReport, VolumeError> {
        let t0 = Instant::now();
        let snap = self.select(&req.snapshot)?;
        let repo = self
            .reopen()?
            .to_indexed()
            .map_err(|e| self.err("read index", &e))?;
        let path = req.path.trim_start_matches('/');
        let node = repo
            .node_from_snapshot_and_path(&snap, path)
            .map_err(|e| self.err("find path in snapshot", &e))?;
        let ls = repo
            .ls(&node, &LsOptions::default())
            .map_err(|e| self.err("list snapshot", &e))?;
        let target = req.target.to_str().ok_or_else(|| VolumeError::Invalid {
            volume: self.volume.clone(),
            message: format!("target {:?} is not valid UTF-8", req.target),
        })?;
        let dest = LocalDestination::new(target, true, !node.is_dir())
            .map_err(|e| self.err("prepare target", &e))?;
        let opts = RestoreOptions::default()
            .delete(req.delete)
            .numeric_id(true)
            .verify_existing(req.verify);
        let plan = repo
            .prepare_restore(&opts, ls.clone(), &dest, req.dry_run)
            .map_err(|e| self.err("plan restore", &e))?;
        let stats = plan.stats;
        let (size, matched) = (plan.restore_size, plan.matched_size);
        if !req.dry_run {
            repo.restore(plan, &opts, ls, &dest)
                .map_err(|e| self.err("restore", &e))?;
        }
        Ok(RestoreReport {
            snapshot: SnapshotInfo::from_file(&snap),
            files_restored: stats.files.restore + stats.files.modify,
            files_unchanged: stats.files.unchanged + stats.files.verified,
            bytes_restored: size,
            bytes_unchanged: matched,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Verify the repository's structure (and, with `read_data`, every pack's content).
    pub fn check(&self, read_data: bool) -> Result<CheckReport, VolumeError> {
        let t0 = Instant::now();
        let snapshots = self.snapshot_files()?.len();
        let r = self
            .inner
            .check(CheckOptions::default().read_data(read_data));
        let (ok, problems) = match r {
            Ok(results) => match results.is_ok() {
                Ok(()) => (true, Vec::new()),
                Err(e) => (false, vec![e.display_log()]),
            },
            Err(e) => (false, vec![e.display_log()]),
        };
        Ok(CheckReport {
            ok,
            problems,
            snapshots,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Apply a retention policy to this volume's snapshots and prune what no kept snapshot
    /// needs. Activation markers are always kept. Pack files are deleted in two phases (marked,
    /// then removed after `keep_delete`), so a standby reading an older index never finds a
    /// pack gone under it.
    pub fn forget_and_prune(
        &self,
        retention: &tandem_config::volume::Retention,
        keep_delete: Duration,
    ) -> Result<PruneReport, VolumeError> {
        let snaps = self.snapshot_files()?;
        let as_i32 = |n: u32| (n > 0).then(|| i32::try_from(n).unwrap_or(i32::MAX));
        let tags: StringList = TAG_ACTIVATED
            .parse()
            .map_err(|e| VolumeError::Internal(format!("tag: {e}")))?;
        let mut keep = KeepOptions::default().keep_tags(vec![tags]);
        keep.keep_last = as_i32(retention.keep_last);
        keep.keep_hourly = as_i32(retention.keep_hourly);
        keep.keep_daily = as_i32(retention.keep_daily);
        keep.keep_weekly = as_i32(retention.keep_weekly);
        let now = rustic_core::jiff::Zoned::now();
        let decided = keep
            .apply(snaps, &now)
            .map_err(|e| self.err("apply retention", &e))?;
        let mut report = PruneReport::default();
        let mut forget = Vec::new();
        for d in decided {
            let id = d.snapshot.id.to_hex().to_string();
            if d.keep {
                report.kept.push(id);
            } else {
                forget.push(d.snapshot.id);
                report.forgotten.push(id);
            }
        }
        if !forget.is_empty() {
            self.inner
                .delete_snapshots(&forget)
                .map_err(|e| self.err("forget snapshots", &e))?;
        }
        let span = rustic_core::jiff::Span::new()
            .seconds(i64::try_from(keep_delete.as_secs()).unwrap_or(i64::MAX));
        let opts = PruneOptions::default().keep_delete(span);
        let plan = self
            .inner
            .prune_plan(&opts)
            .map_err(|e| self.err("plan prune", &e))?;
        report.packs_removed = plan.stats.packs.unused + plan.stats.packs.repack;
        report.bytes_freed = plan.stats.size_sum().unused;
        self.inner
            .prune(&opts, plan)
            .map_err(|e| self.err("prune", &e))?;
        Ok(report)
    }
}
