//! The registry's operations, independent of HTTP: resolve and read manifests and blobs (with
//! read-through to peers), uploads, manifest pushes, deletes, listings. Every state change is
//! one metadata transaction; content is written to storage (verified) before the transaction
//! that makes it visible, under a per-digest lock that GC also takes.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use tandem_config::registry::{RegistryConfig, WebhookEvent};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::hlc::now_ms;
use crate::meta::{
    Applied, Change, Entry, Key, ManifestMeta, Meta, MetaError, UploadRecord, Value,
};
use crate::metrics::Metrics;
use crate::oci::manifest::{self, ManifestError};
use crate::oci::{Algorithm, ApiError, Code, Digest, Reference};
use crate::replication::peer::Peers;
use crate::storage::{Storage, StorageError};
use crate::uploads::{AppendError, Live, Uploads};
use crate::webhooks::{Event, Target, Webhooks};

/// Striped async locks by digest: content placement + registration, and GC's check + delete,
/// never interleave for the same digest.
pub struct Locks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for Locks {
    fn default() -> Self {
        Self::new()
    }
}

impl Locks {
    /// 256 stripes.
    pub fn new() -> Locks {
        Locks {
            stripes: (0..256).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    /// Lock a digest (by its first hex byte pair).
    pub async fn lock(&self, digest: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let hex = digest.rsplit(':').next().unwrap_or("");
        let i = u8::from_str_radix(hex.get(..2).unwrap_or("00"), 16).unwrap_or(0) as usize;
        self.stripes[i % self.stripes.len()].lock().await
    }
}

/// The shared state of a replica.
pub struct Core {
    /// Region served.
    pub region: String,
    /// Base URL of this replica.
    pub url: String,
    /// The whole registry section.
    pub cfg: Arc<RegistryConfig>,
    /// Metadata.
    pub meta: Meta,
    /// Content.
    pub storage: Storage,
    /// Authentication and policy.
    pub auth: Auth,
    /// Upload sessions.
    pub uploads: Uploads,
    /// Digest locks.
    pub locks: Locks,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Webhook fan-out.
    pub webhooks: Webhooks,
    /// The log head, for long polls.
    pub head: watch::Sender<u64>,
    /// Peers (read-through).
    pub peers: Peers,
    /// Concurrent upload bodies.
    pub upload_slots: Arc<Semaphore>,
    /// Shutdown.
    pub shutdown: CancellationToken,
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        tracing::error!(error = %e, "metadata error");
        ApiError::internal(e.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        tracing::error!(error = %e, "storage error");
        ApiError::unavailable(e.to_string())
    }
}

/// Run blocking metadata work off the runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// A resolved manifest.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Its digest.
    pub digest: Digest,
    /// Its metadata.
    pub meta: ManifestMeta,
}

fn body_error(e: AppendError) -> ApiError {
    match e {
        AppendError::Body(m) => ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::BlobUploadInvalid,
            format!("upload body broke off ({m}); check the upload's status with GET and resume"),
        ),
        AppendError::TooLarge(max) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::SizeInvalid,
            format!("blob exceeds this registry's limit of {max} bytes"),
        ),
        AppendError::Io { .. } => ApiError::internal(e.to_string()),
    }
}

impl Core {
    /// Commit a metadata write on the blocking pool, then publish the new head and events.
    pub async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut crate::meta::Writer<'_>) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let meta = self.meta.clone();
        let (out, changes) = blocking(move || meta.write(f)).await?;
        self.published(&changes);
        Ok(out)
    }

    fn published(&self, changes: &[Change]) {
        if let Some(last) = changes.last() {
            self.head.send_replace(last.seq);
        }
        if self.webhooks.is_empty() {
            return;
        }
        for c in changes {
            let kind = if c.reg.value.is_some() {
                WebhookEvent::Push
            } else {
                WebhookEvent::Delete
            };
            if let Some(ev) = self.event(&c.key, c.reg.value.as_ref(), &c.reg.stamp.region, kind) {
                self.webhooks.send(kind, ev, &self.metrics);
            }
        }
    }

    /// Emit `replicated` events for registers applied from a peer.
    pub fn replicated(&self, applied: &[Applied]) {
        if self.webhooks.is_empty() {
            return;
        }
        for a in applied {
            if let Some(ev) = self.event(
                &a.key,
                a.entry.value(),
                &a.entry.reg.stamp.region,
                WebhookEvent::Replicated,
            ) {
                self.webhooks
                    .send(WebhookEvent::Replicated, ev, &self.metrics);
            }
        }
    }

    fn event(
        &self,
        key: &Key,
        value: Option<&Value>,
        origin: &str,
        kind: WebhookEvent,
    ) -> Option<Event> {
        let action = match kind {
            WebhookEvent::Push => "push",
            WebhookEvent::Delete => "delete",
            WebhookEvent::Replicated => "replicated",
        };
        let target = match (key, value) {
            (Key::Tag { repo, tag }, v) => Target {
                repository: repo.clone(),
                digest: match v {
                    Some(Value::Tag { digest }) => Some(digest.to_string()),
                    _ => None,
                },
                tag: Some(tag.clone()),
                media_type: None,
            },
            (Key::Manifest { repo, digest }, v) => Target {
                repository: repo.clone(),
                digest: Some(digest.to_string()),
                tag: None,
                media_type: match v {
                    Some(Value::Manifest(m)) => Some(m.media_type.clone()),
                    _ => None,
                },
            },
            // Blob links are too chatty for hooks, except deletes.
            (Key::Blob { repo, digest }, None) => Target {
                repository: repo.clone(),
                digest: Some(digest.to_string()),
                tag: None,
                media_type: None,
            },
            (Key::Blob { .. }, Some(_)) => return None,
        };
        Some(Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp_ms: now_ms(),
            action,
            region: self.region.clone(),
            origin: origin.to_string(),
            target,
        })
    }

    // ----- reads -------------------------------------------------------------------------

    /// Resolve a manifest reference locally, then from peers.
    pub async fn resolve(
        self: &Arc<Self>,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<Resolved>, ApiError> {
        if let Some(r) = self.resolve_local(repo, reference).await? {
            return Ok(Some(r));
        }
        if self.cfg.replication.read_through && !self.peers.is_empty() {
            let hit = self
                .peers
                .read_through_manifest(self, repo, reference)
                .await;
            self.metrics
                .read_through
                .get_or_create(&crate::metrics::ReadThroughLabels {
                    kind: "manifest",
                    result: if hit { "hit" } else { "miss" },
                })
                .inc();
            if hit {
                return self.resolve_local(repo, reference).await;
            }
        }
        Ok(None)
    }

    /// Resolve a reference from local metadata only.
    pub async fn resolve_local(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<Resolved>, ApiError> {
        let meta = self.meta.clone();
        let repo = repo.to_string();
        let reference = reference.clone();
        blocking(move || {
            let digest = match &reference {
                Reference::Digest(d) => d.clone(),
                Reference::Tag(t) => match meta.get_value(&Key::Tag {
                    repo: repo.clone(),
                    tag: t.clone(),
                })? {
                    Some(Value::Tag { digest }) => digest,
                    _ => return Ok(None),
                },
            };
            match meta.get_value(&Key::Manifest {
                repo,
                digest: digest.clone(),
            })? {
                Some(Value::Manifest(m)) => Ok(Some(Resolved { digest, meta: m })),
                _ => Ok(None),
            }
        })
        .await
    }

    /// The size of a blob linked into `repo`, locally or read through from a peer.
    pub async fn blob_size(
        self: &Arc<Self>,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, ApiError> {
        if let Some(s) = self.blob_size_local(repo, digest).await? {
            return Ok(Some(s));
        }
        if self.cfg.replication.read_through && !self.peers.is_empty() {
            let hit = self.peers.read_through_blob(self, repo, digest).await;
            self.metrics
                .read_through
                .get_or_create(&crate::metrics::ReadThroughLabels {
                    kind: "blob",
                    result: if hit { "hit" } else { "miss" },
                })
                .inc();
            if hit {
                return self.blob_size_local(repo, digest).await;
            }
        }
        Ok(None)
    }

    async fn blob_size_local(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, ApiError> {
        let meta = self.meta.clone();
        let key = Key::Blob {
            repo: repo.to_string(),
            digest: digest.clone(),
        };
        let d = digest.clone();
        blocking(move || {
            match meta.get_value(&key)? {
                Some(Value::Blob { size }) => Ok(Some(size)),
                // A manifest is also a blob of its repository (clients fetch manifests by digest
                // through the blob endpoint, e.g. for referrers fallbacks).
                _ => match meta.get_value(&Key::Manifest {
                    repo: key.repo().to_string(),
                    digest: d,
                })? {
                    Some(Value::Manifest(m)) => Ok(Some(m.size)),
                    _ => Ok(None),
                },
            }
        })
        .await
    }

    // ----- content placement ---------------------------------------------------------------

    /// Store verified small content and record it (under the digest lock).
    pub async fn store_bytes(
        self: &Arc<Self>,
        digest: &Digest,
        data: Bytes,
    ) -> Result<(), ApiError> {
        let _g = self.locks.lock(&digest.to_string()).await;
        let size = data.len() as u64;
        if self.meta_content(digest).await?.is_none() {
            self.storage.put_bytes(digest, data).await?;
        }
        let d = digest.clone();
        self.write(move |w| Ok(w.put_content(&d, size)?)).await
    }

    async fn meta_content(&self, digest: &Digest) -> Result<Option<(u64, u64)>, ApiError> {
        let meta = self.meta.clone();
        let d = digest.clone();
        blocking(move || Ok(meta.content(&d)?)).await
    }

    /// Whether content is stored locally.
    pub async fn has_content(&self, digest: &Digest) -> Result<bool, ApiError> {
        Ok(self.meta_content(digest).await?.is_some())
    }

    // ----- uploads -------------------------------------------------------------------------

    /// Start an upload session.
    pub async fn start_upload(self: &Arc<Self>, repo: &str) -> Result<String, ApiError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.uploads
            .create_file(&id, repo)
            .await
            .map_err(|e| ApiError::internal(format!("cannot create upload staging file: {e}")))?;
        let rec = UploadRecord {
            repo: repo.to_string(),
            created_ms: now_ms(),
        };
        let id2 = id.clone();
        let meta = self.meta.clone();
        blocking(move || {
            meta.write_lazy(|w| -> Result<(), ApiError> { Ok(w.put_upload(&id2, &rec)?) })
                .map(|_| ())
        })
        .await?;
        Ok(id)
    }

    /// A session's live state, if it exists and belongs to `repo`.
    pub async fn upload(
        &self,
        repo: &str,
        id: &str,
    ) -> Result<Arc<tokio::sync::Mutex<Live>>, ApiError> {
        let meta = self.meta.clone();
        let id2 = id.to_string();
        let rec = blocking(move || Ok(meta.upload(&id2)?)).await?;
        match rec {
            Some(r) if r.repo == repo => self
                .uploads
                .get(id, repo)
                .await
                .ok_or_else(|| ApiError::upload_unknown(id)),
            _ => Err(ApiError::upload_unknown(id)),
        }
    }

    /// Append a body to a session at `expected_start` (when the client said where).
    /// `acknowledged_alone` is true for a PATCH, whose answer acknowledges the bytes by
    /// themselves; false when the same request finishes the upload (which commits durably).
    pub async fn append<S, E>(
        &self,
        id: &str,
        live: &mut Live,
        expected_start: Option<u64>,
        body: S,
        acknowledged_alone: bool,
    ) -> Result<u64, ApiError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if let Some(start) = expected_start
            && start != live.offset
        {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                Code::BlobUploadInvalid,
                format!(
                    "chunk starts at {start} but the upload has {} bytes; GET the upload to learn its offset",
                    live.offset
                ),
            )
            .header(http::header::RANGE, range_header(live.offset)));
        }
        let _slot = self.upload_slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                Code::TooManyRequests,
                "too many uploads in progress on this replica; retry shortly",
            )
            .header(http::header::RETRY_AFTER, "1")
        })?;
        self.metrics.uploads_in_progress.inc();
        let before = live.offset;
        let r = self
            .uploads
            .append(id, live, body, self.cfg.limits.max_blob_bytes)
            .await;
        self.metrics.uploads_in_progress.dec();
        self.metrics.bytes_in.inc_by(live.offset - before);
        let offset = r.map_err(body_error)?;
        if acknowledged_alone && !live.durable {
            // The session record was committed lazily; make it durable before this chunk is
            // acknowledged, so an acknowledged chunk always belongs to a known session.
            let meta = self.meta.clone();
            blocking(move || {
                meta.write(|_| -> Result<(), ApiError> { Ok(()) })
                    .map(|_| ())
            })
            .await?;
            live.durable = true;
        }
        Ok(offset)
    }

    /// Finish a session: verify the digest, place the content, link it into the repository.
    pub async fn finish_upload(
        self: &Arc<Self>,
        repo: &str,
        id: &str,
        live: &Live,
        digest: &Digest,
    ) -> Result<(), ApiError> {
        let actual = self
            .uploads
            .digest(id, live, digest.algorithm())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if &actual != digest {
            // Nothing half-written stays: the session and its bytes are dropped.
            self.cancel_upload(id).await?;
            return Err(ApiError::digest_invalid(format!(
                "provided digest {digest} does not match the uploaded content ({actual}); the upload was discarded, start again"
            ))
            .detail(serde_json::json!({ "expected": digest.to_string(), "actual": actual.to_string() })));
        }
        let size = live.offset;
        let _g = self.locks.lock(&digest.to_string()).await;
        if self.meta_content(digest).await?.is_none() {
            self.storage.place(&self.uploads.path(id), digest).await?;
        } else {
            self.uploads.remove(id).await;
        }
        let key = Key::Blob {
            repo: repo.to_string(),
            digest: digest.clone(),
        };
        let d = digest.clone();
        let id2 = id.to_string();
        self.write(move |w| {
            w.put_content(&d, size)?;
            if w.get_value(&key)?.is_none() {
                w.put_local(key, Some(Value::Blob { size }))?;
            }
            w.remove_upload(&id2)?;
            Ok(())
        })
        .await?;
        self.uploads.remove(id).await;
        Ok(())
    }

    /// Cancel a session.
    pub async fn cancel_upload(self: &Arc<Self>, id: &str) -> Result<(), ApiError> {
        let id2 = id.to_string();
        self.write(move |w| Ok(w.remove_upload(&id2)?)).await?;
        self.uploads.remove(id).await;
        Ok(())
    }

    /// Mount a blob from another repository: link it here if `from` has it.
    pub async fn mount(
        self: &Arc<Self>,
        repo: &str,
        from: &str,
        digest: &Digest,
    ) -> Result<bool, ApiError> {
        let _g = self.locks.lock(&digest.to_string()).await;
        let from_key = Key::Blob {
            repo: from.to_string(),
            digest: digest.clone(),
        };
        let key = Key::Blob {
            repo: repo.to_string(),
            digest: digest.clone(),
        };
        self.write(move |w| {
            let Some(Value::Blob { size }) = w.get_value(&from_key)? else {
                return Ok(false);
            };
            if w.get_value(&key)?.is_none() {
                w.put_local(key, Some(Value::Blob { size }))?;
            }
            Ok(true)
        })
        .await
    }

    // ----- manifests -----------------------------------------------------------------------

    /// Push a manifest. Returns its digest and subject.
    pub async fn put_manifest(
        self: &Arc<Self>,
        repo: &str,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<(Digest, Option<Digest>), ApiError> {
        let info = manifest::parse(&body, content_type).map_err(|e| match e {
            ManifestError::Json(_)
            | ManifestError::MediaType(_)
            | ManifestError::Mismatch { .. }
            | ManifestError::SchemaVersion
            | ManifestError::Missing(_) => ApiError::manifest_invalid(e.to_string()),
        })?;
        let alg = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let digest = Digest::of(alg, &body);
        if let Reference::Digest(d) = reference
            && d != &digest
        {
            return Err(ApiError::digest_invalid(format!(
                "manifest digest is {digest}, not {d} as the reference says"
            )));
        }
        let size = body.len() as u64;
        let mm = ManifestMeta {
            media_type: info.media_type.clone(),
            size,
            blobs: info.blobs.clone(),
            manifests: info.manifests.clone(),
            subject: info.subject.clone(),
            artifact_type: info.artifact_type.clone(),
            annotations: info.annotations.clone(),
        };
        let _g = self.locks.lock(&digest.to_string()).await;
        if self.meta_content(&digest).await?.is_none() {
            self.storage.put_bytes(&digest, body).await?;
        }
        let repo_s = repo.to_string();
        let d = digest.clone();
        let tag = match reference {
            Reference::Tag(t) => Some(t.clone()),
            Reference::Digest(_) => None,
        };
        let is_index = info.is_index();
        self.write(move |w| {
            let mut missing = Vec::new();
            for b in &mm.blobs {
                if w.get_value(&Key::Blob {
                    repo: repo_s.clone(),
                    digest: b.clone(),
                })?
                .is_none()
                {
                    missing.push(b.to_string());
                }
            }
            for m in &mm.manifests {
                if !matches!(
                    w.get_value(&Key::Manifest {
                        repo: repo_s.clone(),
                        digest: m.clone(),
                    })?,
                    Some(Value::Manifest(_))
                ) {
                    missing.push(m.to_string());
                }
            }
            if !missing.is_empty() {
                let what = if is_index { "manifests" } else { "blobs" };
                let mut err = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    Code::ManifestBlobUnknown,
                    format!(
                        "manifest references {what} this repository does not have; push them first"
                    ),
                )
                .detail(serde_json::json!({ "digest": missing[0] }));
                for m in missing.iter().skip(1) {
                    err.errors.push(crate::oci::error::ErrorEntry {
                        code: Code::ManifestBlobUnknown,
                        message: Code::ManifestBlobUnknown.description().to_string(),
                        detail: serde_json::json!({ "digest": m }),
                    });
                }
                return Err(err);
            }
            w.put_content(&d, size)?;
            let mkey = Key::Manifest {
                repo: repo_s.clone(),
                digest: d.clone(),
            };
            if w.get_value(&mkey)? != Some(Value::Manifest(mm.clone())) {
                w.put_local(mkey, Some(Value::Manifest(mm)))?;
            }
            if let Some(t) = tag {
                let tkey = Key::Tag {
                    repo: repo_s,
                    tag: t,
                };
                if w.get_value(&tkey)? != Some(Value::Tag { digest: d.clone() }) {
                    w.put_local(tkey, Some(Value::Tag { digest: d }))?;
                }
            }
            Ok(())
        })
        .await?;
        self.metrics.bytes_in.inc_by(size);
        Ok((digest, info.subject))
    }

    /// Delete a manifest (by digest, with the tags pointing at it) or a tag.
    pub async fn delete_manifest(
        self: &Arc<Self>,
        repo: &str,
        reference: &Reference,
    ) -> Result<(), ApiError> {
        let repo_s = repo.to_string();
        let reference = reference.clone();
        let meta = self.meta.clone();
        let tags = if let Reference::Digest(_) = &reference {
            let repo2 = repo_s.clone();
            blocking(move || Ok(meta.tag_entries(&repo2)?)).await?
        } else {
            Vec::new()
        };
        self.write(move |w| match &reference {
            Reference::Tag(t) => {
                let key = Key::Tag {
                    repo: repo_s.clone(),
                    tag: t.clone(),
                };
                if w.get_value(&key)?.is_none() {
                    return Err(ApiError::manifest_unknown(t));
                }
                w.put_local(key, None)?;
                Ok(())
            }
            Reference::Digest(d) => {
                let key = Key::Manifest {
                    repo: repo_s.clone(),
                    digest: d.clone(),
                };
                if w.get_value(&key)?.is_none() {
                    return Err(ApiError::manifest_unknown(&d.to_string()));
                }
                w.put_local(key, None)?;
                for (tag, e) in tags {
                    let tkey = Key::Tag {
                        repo: repo_s.clone(),
                        tag,
                    };
                    // Re-read inside the transaction: only tags still pointing here go.
                    if matches!(e.value(), Some(Value::Tag { .. }))
                        && w.get_value(&tkey)? == Some(Value::Tag { digest: d.clone() })
                    {
                        w.put_local(tkey, None)?;
                    }
                }
                Ok(())
            }
        })
        .await
    }

    /// Unlink a blob from a repository.
    pub async fn delete_blob(
        self: &Arc<Self>,
        repo: &str,
        digest: &Digest,
    ) -> Result<(), ApiError> {
        let key = Key::Blob {
            repo: repo.to_string(),
            digest: digest.clone(),
        };
        let d = digest.to_string();
        self.write(move |w| {
            if w.get_value(&key)?.is_none() {
                return Err(ApiError::blob_unknown(&d));
            }
            w.put_local(key, None)?;
            Ok(())
        })
        .await
    }

    /// Apply registers fetched from a peer (read-through), after their content is stored.
    pub async fn apply_remote(
        self: &Arc<Self>,
        entries: Vec<(Key, Entry)>,
    ) -> Result<(), ApiError> {
        let applied = self
            .write(move |w| {
                let mut out = Vec::new();
                for (k, e) in entries {
                    let needs = match (&k, e.value()) {
                        (Key::Blob { digest, .. } | Key::Manifest { digest, .. }, Some(_)) => {
                            Some(digest.clone())
                        }
                        _ => None,
                    };
                    if let Some(d) = needs
                        && w.content(&d)?.is_none()
                    {
                        return Err(ApiError::unavailable(format!(
                            "content {d} vanished before it was registered"
                        )));
                    }
                    if let Some(a) = w.merge(&k, e)? {
                        out.push(a);
                    }
                }
                Ok(out)
            })
            .await?;
        self.replicated(&applied);
        Ok(())
    }
}

/// `Range: 0-<last>` for an upload of `offset` bytes (`0-0` when empty, as registries do).
pub fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}
