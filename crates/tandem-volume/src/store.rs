//! The repository's storage: rustic's `WriteBackend` over an `object_store` (a local directory,
//! S3, Azure Blob or GCS), laid out exactly as restic lays out a repository (`config`,
//! `keys/`, `snapshots/`, `index/`, `data/xx/`), so Debian's `restic` reads what Tandem writes.
//!
//! Two things rustic does not do are done here, because they matter on a link between regions:
//!
//! * **Concurrent uploads with an ordering barrier.** rustic hands packs over one at a time.
//!   A pack write returns as soon as the upload has been queued, up to `concurrency` in flight;
//!   any other write (index, snapshot, key, config) first waits for every queued pack to land
//!   and fails if one did not. So an index never names a pack that is not stored, and a
//!   snapshot never names an index entry that is not stored: a snapshot is complete or absent.
//! * **A bandwidth limit** (a token bucket over uploaded bytes), and a **fence** that refuses to
//!   write a snapshot file once the snapshot has been abandoned (shutdown mid-snapshot).
//!
//! Every put is atomic (object stores by nature; the local store writes a staging file and
//! renames it), so a killed process leaves whole packs or none.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rustic_core::{ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend};
use tandem_config::volume::Repository as RepoConfig;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::error::VolumeError;

/// How long one storage operation may take before it counts as a dead link.
const OP_TIMEOUT: Duration = Duration::from_secs(120);

/// Counters of what went over the link.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Bytes uploaded (pack, index, snapshot and key files).
    pub uploaded_bytes: AtomicU64,
    /// Files uploaded.
    pub uploaded_files: AtomicU64,
    /// Bytes downloaded.
    pub downloaded_bytes: AtomicU64,
}

/// Upload tuning for one repository.
#[derive(Debug, Clone, Copy)]
pub struct StoreTuning {
    /// Pack uploads in flight at once.
    pub concurrency: usize,
    /// Upload limit in bytes per second.
    pub bandwidth: Option<u64>,
}

impl Default for StoreTuning {
    fn default() -> Self {
        StoreTuning {
            concurrency: 4,
            bandwidth: None,
        }
    }
}

/// A repository's storage.
#[derive(Debug)]
pub struct Store {
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    location: String,
    local_root: Option<PathBuf>,
    rt: Handle,
    slots: Arc<Semaphore>,
    concurrency: u32,
    failed: Arc<Mutex<Option<String>>>,
    limiter: Option<Arc<RateLimiter>>,
    fence: Arc<AtomicBool>,
    stats: Arc<StoreStats>,
}

impl Store {
    /// Open the storage a repository config names. Local directories are created.
    pub fn open(cfg: &RepoConfig, tuning: StoreTuning, rt: Handle) -> Result<Store, VolumeError> {
        let loc = cfg.location.trim();
        let bad = |message: String| VolumeError::Repository {
            location: redact(loc),
            op: "open",
            message,
            hint:
                "check the repository URL and its options in [volume] (docs/volume.md lists them)"
                    .into(),
        };
        let (store, prefix, local_root): (Arc<dyn ObjectStore>, ObjPath, Option<PathBuf>) =
            if let Some((scheme, _)) = loc.split_once("://") {
                let url = url::Url::parse(loc).map_err(|e| bad(format!("invalid URL: {e}")))?;
                let prefix = ObjPath::from_url_path(url.path())
                    .map_err(|e| bad(format!("invalid path in URL: {e}")))?;
                match scheme {
                    "file" => {
                        let dir = url
                            .to_file_path()
                            .map_err(|()| bad("file:// URL without a usable path".into()))?;
                        let (s, root) = local(&dir, loc)?;
                        (s, ObjPath::default(), Some(root))
                    }
                    "memory" => (
                        Arc::new(object_store::memory::InMemory::new()),
                        prefix,
                        None,
                    ),
                    "s3" | "s3a" => {
                        let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(loc);
                        for (k, v) in &cfg.options {
                            let key = k.parse().map_err(|e| bad(format!("option {k:?}: {e}")))?;
                            b = b.with_config(key, v);
                        }
                        (
                            Arc::new(b.build().map_err(|e| bad(e.to_string()))?),
                            prefix,
                            None,
                        )
                    }
                    "az" | "azure" | "abfs" | "abfss" | "adl" => {
                        let mut b =
                            object_store::azure::MicrosoftAzureBuilder::from_env().with_url(loc);
                        for (k, v) in &cfg.options {
                            let key = k.parse().map_err(|e| bad(format!("option {k:?}: {e}")))?;
                            b = b.with_config(key, v);
                        }
                        (
                            Arc::new(b.build().map_err(|e| bad(e.to_string()))?),
                            prefix,
                            None,
                        )
                    }
                    "gs" => {
                        let mut b =
                            object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(loc);
                        for (k, v) in &cfg.options {
                            let key = k.parse().map_err(|e| bad(format!("option {k:?}: {e}")))?;
                            b = b.with_config(key, v);
                        }
                        (
                            Arc::new(b.build().map_err(|e| bad(e.to_string()))?),
                            prefix,
                            None,
                        )
                    }
                    other => return Err(bad(format!("unsupported scheme {other:?}"))),
                }
            } else {
                let (s, root) = local(&PathBuf::from(loc), loc)?;
                (s, ObjPath::default(), Some(root))
            };
        Ok(Store::from_parts(
            store,
            prefix,
            redact(loc),
            local_root,
            tuning,
            rt,
        ))
    }

    /// Storage over any object store (tests use this with failure-injecting stores).
    pub fn from_parts(
        store: Arc<dyn ObjectStore>,
        prefix: ObjPath,
        location: String,
        local_root: Option<PathBuf>,
        tuning: StoreTuning,
        rt: Handle,
    ) -> Store {
        let concurrency = tuning.concurrency.clamp(1, 64) as u32;
        Store {
            store,
            prefix,
            location,
            local_root,
            rt,
            slots: Arc::new(Semaphore::new(concurrency as usize)),
            concurrency,
            failed: Arc::new(Mutex::new(None)),
            limiter: tuning.bandwidth.map(|b| Arc::new(RateLimiter::new(b))),
            fence: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(StoreStats::default()),
        }
    }

    /// The counters of this store.
    pub fn stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }

    /// The location, with credentials removed, for messages.
    pub fn location_name(&self) -> &str {
        &self.location
    }

    /// Refuse snapshot writes from now on (the snapshot in progress is being abandoned), or
    /// allow them again.
    pub fn set_fence(&self, on: bool) {
        self.fence.store(on, Ordering::SeqCst);
    }

    pub(crate) fn fence_flag(&self) -> Arc<AtomicBool> {
        self.fence.clone()
    }

    /// Remove staging files a killed process left in a local repository.
    pub fn sweep_staging(&self) {
        let Some(root) = &self.local_root else { return };
        let Ok(dirs) = std::fs::read_dir(root.join("data")) else {
            return;
        };
        for d in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                if f.file_name().to_string_lossy().contains('#') {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
    }

    fn path(&self, tpe: FileType, id: &Id) -> ObjPath {
        let hex = id.to_hex();
        let s = hex.as_str();
        match tpe {
            FileType::Config => self.prefix.clone().join("config"),
            FileType::Pack => self.prefix.clone().join("data").join(&s[..2]).join(s),
            other => self.prefix.clone().join(other.dirname()).join(s),
        }
    }

    fn err(&self, op: &str, what: String, e: impl std::fmt::Display) -> Box<RusticError> {
        let msg = e.to_string();
        let hint = storage_hint(&msg);
        RusticError::new(
            ErrorKind::Backend,
            "repository {location}: {op} {what} failed: {message} ({hint})",
        )
        .attach_context("location", self.location.clone())
        .attach_context("op", op.to_string())
        .attach_context("what", what)
        .attach_context("message", msg)
        .attach_context("hint", hint.to_string())
    }

    fn block<F: Future>(&self, f: F) -> Result<F::Output, tokio::time::error::Elapsed> {
        self.rt
            .block_on(async move { tokio::time::timeout(OP_TIMEOUT, f).await })
    }

    /// Wait until every queued pack upload has finished; fail if one failed.
    fn barrier(&self) -> RusticResult<()> {
        let slots = self.slots.clone();
        let n = self.concurrency;
        let _all = self
            .rt
            .block_on(async move { slots.acquire_many_owned(n).await })
            .map_err(|e| self.err("wait for", "uploads".into(), e))?;
        self.take_failure()
    }

    fn take_failure(&self) -> RusticResult<()> {
        let failed = self
            .failed
            .lock()
            .map(|mut f| f.take())
            .unwrap_or_else(|p| p.into_inner().take());
        match failed {
            Some(msg) => Err(self.err("upload", "a pack".into(), msg)),
            None => Ok(()),
        }
    }
}

fn local(dir: &std::path::Path, loc: &str) -> Result<(Arc<dyn ObjectStore>, PathBuf), VolumeError> {
    std::fs::create_dir_all(dir).map_err(|e| VolumeError::Repository {
        location: loc.to_string(),
        op: "create",
        message: e.to_string(),
        hint: storage_hint(&e.to_string()).to_string(),
    })?;
    let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| VolumeError::Repository {
            location: loc.to_string(),
            op: "open",
            message: e.to_string(),
            hint: storage_hint(&e.to_string()).to_string(),
        })?
        .with_automatic_cleanup(true);
    Ok((Arc::new(fs), dir.to_path_buf()))
}

/// What to do about a storage error, judged from its text.
pub(crate) fn storage_hint(msg: &str) -> &'static str {
    let m = msg.to_ascii_lowercase();
    if m.contains("no space left") || m.contains("quota") {
        "the repository's disk is full: free space or grow it; nothing partial was written, the next attempt resumes"
    } else if m.contains("permission denied")
        || m.contains("forbidden")
        || m.contains("access denied")
    {
        "check the repository's permissions and credentials"
    } else if m.contains("connect")
        || m.contains("timed out")
        || m.contains("timeout")
        || m.contains("dns")
        || m.contains("unreachable")
    {
        "the repository is unreachable: check the link to the paired region; the agent retries and resumes"
    } else if m.contains("not found") || m.contains("no such file") {
        "the object or directory does not exist: check the repository location"
    } else {
        "check the repository and the link to it; the agent retries and resumes"
    }
}

/// Remove a URL's user info (it may hold a credential).
pub(crate) fn redact(loc: &str) -> String {
    match url::Url::parse(loc) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => loc.to_string(),
    }
}

impl ReadBackend for Store {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let p = self.prefix.clone().join("config");
            let r = self.block(self.store.head(&p));
            return match r {
                Ok(Ok(meta)) => Ok(vec![(Id::default(), meta.size as u32)]),
                Ok(Err(object_store::Error::NotFound { .. })) => Ok(Vec::new()),
                Ok(Err(e)) => Err(self.err("list", "config".into(), e)),
                Err(e) => Err(self.err("list", "config".into(), e)),
            };
        }
        let dir = self.prefix.clone().join(tpe.dirname());
        let store = self.store.clone();
        let listed =
            self.block(async move { store.list(Some(&dir)).try_collect::<Vec<_>>().await });
        let metas = match listed {
            Ok(Ok(m)) => m,
            Ok(Err(object_store::Error::NotFound { .. })) => Vec::new(),
            Ok(Err(e)) => return Err(self.err("list", tpe.dirname().into(), e)),
            Err(e) => return Err(self.err("list", tpe.dirname().into(), e)),
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?;
                let id: Id = name.parse().ok()?;
                Some((id, u32::try_from(m.size).unwrap_or(u32::MAX)))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let p = self.path(tpe, id);
        let store = self.store.clone();
        let what = format!("{tpe} {}", id.to_hex().as_str());
        let b = self
            .block(async move { store.get(&p).await?.bytes().await })
            .map_err(|e| self.err("read", what.clone(), e))?
            .map_err(|e| self.err("read", what, e))?;
        self.stats
            .downloaded_bytes
            .fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let p = self.path(tpe, id);
        let range: Range<u64> = u64::from(offset)..u64::from(offset) + u64::from(length);
        let what = format!("{tpe} {}", id.to_hex().as_str());
        let b = self
            .block(self.store.get_range(&p, range))
            .map_err(|e| self.err("read", what.clone(), e))?
            .map_err(|e| self.err("read", what, e))?;
        self.stats
            .downloaded_bytes
            .fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(tpe, id).to_string()
    }
}

impl WriteBackend for Store {
    fn create(&self) -> RusticResult<()> {
        if let Some(root) = &self.local_root {
            // restic expects these directories in a local repository.
            let mut dirs: Vec<PathBuf> = ["keys", "snapshots", "index", "locks"]
                .iter()
                .map(|d| root.join(d))
                .collect();
            dirs.extend((0..=255u8).map(|i| root.join("data").join(format!("{i:02x}"))));
            for d in dirs {
                std::fs::create_dir_all(&d)
                    .map_err(|e| self.err("create", d.display().to_string(), e))?;
            }
        }
        Ok(())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: rustic_core::BytesList,
    ) -> RusticResult<()> {
        let size = content.size() as u64;
        let payload: PutPayload = content.into_vec().into_iter().collect();
        let path = self.path(tpe, id);
        let what = format!("{tpe} {}", id.to_hex().as_str());
        if tpe == FileType::Pack {
            // Queue the upload; the barrier before the next index write waits for it.
            self.take_failure()?;
            let permit = self
                .rt
                .block_on(self.slots.clone().acquire_owned())
                .map_err(|e| self.err("queue", what.clone(), e))?;
            let store = self.store.clone();
            let failed = self.failed.clone();
            let limiter = self.limiter.clone();
            let stats = self.stats.clone();
            self.rt.spawn(async move {
                if let Some(l) = &limiter {
                    l.take(size).await;
                }
                let r = tokio::time::timeout(OP_TIMEOUT, store.put(&path, payload)).await;
                let msg = match r {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(format!("{what}: {e}")),
                    Err(_) => Some(format!("{what}: timed out after {OP_TIMEOUT:?}")),
                };
                match msg {
                    None => {
                        stats.uploaded_bytes.fetch_add(size, Ordering::Relaxed);
                        stats.uploaded_files.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(m) => {
                        if let Ok(mut f) = failed.lock()
                            && f.is_none()
                        {
                            *f = Some(m);
                        }
                    }
                }
                drop(permit);
            });
            return Ok(());
        }
        // Anything that refers to packs waits until they are stored.
        self.barrier()?;
        if tpe == FileType::Snapshot && self.fence.load(Ordering::SeqCst) {
            return Err(RusticError::new(
                ErrorKind::Backend,
                "snapshot abandoned on shutdown: it was not written (data and index that were \
                 uploaded are kept and reused by the next snapshot)",
            ));
        }
        if let Some(l) = &self.limiter {
            self.rt.block_on(l.take(size));
        }
        self.block(self.store.put(&path, payload))
            .map_err(|e| self.err("write", what.clone(), e))?
            .map_err(|e| self.err("write", what, e))?;
        self.stats.uploaded_bytes.fetch_add(size, Ordering::Relaxed);
        self.stats.uploaded_files.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.barrier()?;
        let p = self.path(tpe, id);
        let what = format!("{tpe} {}", id.to_hex().as_str());
        match self.block(self.store.delete(&p)) {
            Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(self.err("remove", what, e)),
            Err(e) => Err(self.err("remove", what, e)),
        }
    }
}

/// A token bucket over bytes: uploads wait so that the long-run rate stays at `rate`, with a
/// burst of one second's worth.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    pub(crate) fn new(rate: u64) -> Self {
        RateLimiter {
            rate: rate.max(1) as f64,
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    pub(crate) async fn take(&self, bytes: u64) {
        let wait = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let burst = Duration::from_secs(1);
            let start = (*next).max(now.checked_sub(burst).unwrap_or(now));
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate);
            next.saturating_duration_since(now + burst)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_user_info() {
        assert_eq!(
            redact("s3://key:secret@bucket/prefix"),
            "s3://bucket/prefix"
        );
        assert_eq!(redact("/srv/repo"), "/srv/repo");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_paces_uploads() {
        let l = RateLimiter::new(1000);
        let t0 = tokio::time::Instant::now();
        // The first second's worth passes at once (burst), the rest is paced.
        l.take(1000).await;
        l.take(1000).await;
        l.take(1000).await;
        l.take(1000).await;
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(2900), "{took:?}");
        assert!(took <= Duration::from_millis(3100), "{took:?}");
    }

    #[test]
    fn hints_name_the_cause() {
        assert!(storage_hint("No space left on device (os error 28)").contains("full"));
        assert!(storage_hint("error trying to connect: tcp connect error").contains("unreachable"));
    }
}
