//! Garbage collection of content nothing uses. Content is in use while any present register
//! refers to it: a blob linked into a repository, a manifest present in one, a blob or child
//! manifest referenced by a present manifest, a tagged manifest. Unused content older than the
//! grace period is deleted; the check and the delete happen under the digest's lock, which
//! upload finalisation, mounts and replication also take, so a concurrent push of the same
//! digest either sees the content gone (and stores it again) or makes it used first (and GC
//! skips it). The grace period covers content fetched for replication whose register is not
//! committed yet, and objects written by a process that crashed before recording them.
//!
//! GC also removes upload sessions idle past the upload TTL.

use std::sync::Arc;

use serde::Serialize;

use crate::core::{Core, blocking};
use crate::hlc::now_ms;
use crate::oci::ApiError;

/// What one GC run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Content objects examined.
    pub examined: u64,
    /// Deleted because unused.
    pub deleted: u64,
    /// Bytes deleted.
    pub deleted_bytes: u64,
    /// Objects in storage with no metadata record (a crash before recording), deleted.
    pub orphans: u64,
    /// Expired upload sessions removed.
    pub uploads_expired: u64,
}

/// Run GC once.
pub async fn run(core: &Arc<Core>) -> Result<GcReport, ApiError> {
    let mut report = GcReport::default();
    let grace_ms = core.cfg.gc.grace.as_millis() as u64;
    let now = now_ms();
    let meta = core.meta.clone();
    let content = blocking(move || Ok(meta.all_content()?)).await?;
    for (digest, size, created) in content {
        report.examined += 1;
        if now.saturating_sub(created) < grace_ms {
            continue;
        }
        let meta = core.meta.clone();
        let d = digest.clone();
        if blocking(move || Ok(meta.in_use(&d)?)).await? {
            continue;
        }
        let _g = core.locks.lock(&digest).await;
        // Re-check under the lock and remove the record in one transaction.
        let d = digest.clone();
        let removed = core
            .write(move |w| {
                if w.in_use(&d)? {
                    return Ok(false);
                }
                w.remove_content(&d)?;
                Ok(true)
            })
            .await?;
        if removed {
            core.storage.delete(&digest).await?;
            report.deleted += 1;
            report.deleted_bytes += size;
            core.metrics.gc_deleted.inc();
            core.metrics.gc_bytes.inc_by(size);
        }
    }
    // Objects without a record: written, then the process died before committing.
    let listed = core.storage.list().await?;
    for (digest, modified_ms) in listed {
        if (now as i64).saturating_sub(modified_ms) < grace_ms as i64 {
            continue;
        }
        let Ok(d) = crate::oci::Digest::parse(&digest) else {
            continue;
        };
        let _g = core.locks.lock(&digest).await;
        if core.has_content(&d).await? {
            continue;
        }
        core.storage.delete(&digest).await?;
        report.orphans += 1;
    }
    // Idle upload sessions.
    let ttl_ms = core.cfg.limits.upload_ttl.as_millis() as u64;
    let meta = core.meta.clone();
    let uploads = blocking(move || Ok(meta.uploads()?)).await?;
    for (id, rec) in &uploads {
        let idle_since = tokio::fs::metadata(core.uploads.path(id))
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .unwrap_or(rec.created_ms);
        if now.saturating_sub(idle_since) > ttl_ms {
            core.cancel_upload(id).await?;
            report.uploads_expired += 1;
        }
    }
    // Staged files with no session record (a crash between file and record).
    for id in core.uploads.staged_ids() {
        if !uploads.iter().any(|(u, _)| *u == id) {
            let path = core.uploads.path(&id);
            let old = tokio::fs::metadata(&path)
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|e| e.as_millis() as u64 > grace_ms.max(60_000));
            if old {
                let _ = tokio::fs::remove_file(path).await;
            }
        }
    }
    Ok(report)
}
