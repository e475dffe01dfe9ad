//! Geo-replication. Each replica keeps a durable, ordered log of the register writes made at
//! it. Every replica runs one puller per peer: it long-polls the peer's log from its cursor,
//! fetches the content the new registers need (concurrently, resuming partial downloads),
//! then merges the registers and advances the cursor in one transaction. A kill at any point
//! repeats at most the last batch, and merging is idempotent, so nothing is applied twice
//! wrongly and nothing is skipped. Partitions need no operator: pullers retry with back-off and
//! resume from their cursor.

pub mod peer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::core::{Core, blocking};
use crate::hlc::now_ms;
use crate::meta::{Entry, Key, PeerView, Value};
use crate::metrics::PeerLabels;
use crate::oci::{ApiError, Digest};
use peer::{Fetched, Peer, PeerError};

/// What the puller of one peer knows, for status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerStatus {
    /// Peer region.
    pub region: String,
    /// Peer URL.
    pub url: String,
    /// Our position in its log.
    pub cursor: u64,
    /// Its log head as last seen.
    pub peer_head: u64,
    /// Changes not applied yet.
    pub lag_changes: u64,
    /// Age of the oldest unapplied change, 0 when caught up.
    pub lag_seconds: f64,
    /// Delay of the last applied change (written there → applied here).
    pub last_delay_seconds: Option<f64>,
    /// Milliseconds since the peer last answered.
    pub last_contact_ms_ago: Option<u64>,
    /// The last error, cleared on success.
    pub last_error: Option<String>,
    /// Changes applied since start.
    pub applied_total: u64,
    #[serde(skip)]
    last_contact_ms: u64,
    #[serde(skip)]
    oldest_pending_ms: Option<u64>,
}

/// Live replication state shared with status.
#[derive(Default)]
pub struct ReplicationState {
    peers: Mutex<BTreeMap<String, PeerStatus>>,
}

impl ReplicationState {
    /// Status of every peer.
    pub fn snapshot(&self) -> Vec<PeerStatus> {
        let now = now_ms();
        self.peers
            .lock()
            .map(|m| {
                m.values()
                    .cloned()
                    .map(|mut p| {
                        p.last_contact_ms_ago =
                            (p.last_contact_ms > 0).then(|| now.saturating_sub(p.last_contact_ms));
                        p.lag_seconds = match p.oldest_pending_ms {
                            Some(t) if p.lag_changes > 0 => now.saturating_sub(t) as f64 / 1000.0,
                            _ => 0.0,
                        };
                        p
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn update(&self, region: &str, f: impl FnOnce(&mut PeerStatus)) {
        if let Ok(mut m) = self.peers.lock() {
            f(m.entry(region.to_string()).or_default());
        }
    }
}

/// Run the puller for one peer until shutdown.
pub async fn pull_loop(
    core: Arc<Core>,
    peer: Peer,
    state: Arc<ReplicationState>,
    shutdown: CancellationToken,
) {
    let labels = PeerLabels {
        peer: peer.region.clone(),
    };
    state.update(&peer.region, |s| {
        s.region = peer.region.clone();
        s.url = peer.url.clone();
    });
    let mut backoff = Duration::from_millis(100);
    let retry_max = core.cfg.replication.retry_max;
    loop {
        let round = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = pull_once(&core, &peer, &state) => r,
        };
        match round {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                state.update(&peer.region, |s| s.last_error = None);
            }
            Err(e) => {
                core.metrics.replication_errors.get_or_create(&labels).inc();
                tracing::warn!(peer = %peer.region, error = %e, "replication round failed; retrying in {:?}", backoff);
                state.update(&peer.region, |s| s.last_error = Some(e.to_string()));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(retry_max);
            }
        }
    }
}

async fn pull_once(
    core: &Arc<Core>,
    peer: &Peer,
    state: &Arc<ReplicationState>,
) -> Result<(), PeerError> {
    let meta = core.meta.clone();
    let pr = peer.region.clone();
    let cursor = blocking(move || Ok(meta.cursors()?.get(&pr).copied().unwrap_or(0)))
        .await
        .map_err(|e| PeerError::Local(format!("{:?}", e.code())))?;
    let cfg = &core.cfg.replication;
    let page = peer.changes(cursor, cfg.batch, cfg.poll_wait).await?;
    let labels = PeerLabels {
        peer: peer.region.clone(),
    };
    let now = now_ms();
    state.update(&peer.region, |s| {
        s.last_contact_ms = now;
        s.last_error = None;
        s.peer_head = page.head;
        s.cursor = cursor;
        s.lag_changes = page.head.saturating_sub(cursor);
        s.oldest_pending_ms = page.changes.first().map(|c| c.at_ms);
    });
    core.metrics
        .lag_changes
        .get_or_create(&labels)
        .set(page.head.saturating_sub(cursor) as i64);
    let view = PeerView {
        head: page.head,
        applied: page.applied.clone(),
        at_ms: now,
    };
    if page.changes.is_empty() {
        core.metrics.lag_seconds.get_or_create(&labels).set(0.0);
        let pr = peer.region.clone();
        core.write(move |w| Ok(w.set_view(&pr, &view)?))
            .await
            .map_err(|e| PeerError::Local(format!("{:?}", e.code())))?;
        sweep_tombstones(core).await;
        return Ok(());
    }
    if let Some(first) = page.changes.first() {
        core.metrics
            .lag_seconds
            .get_or_create(&labels)
            .set(now.saturating_sub(first.at_ms) as f64 / 1000.0);
    }

    // Content the batch needs: for each key, only its last write in this batch matters (later
    // writes of one origin always carry greater stamps).
    let mut last_for_key: HashMap<&Key, usize> = HashMap::new();
    for (i, c) in page.changes.iter().enumerate() {
        last_for_key.insert(&c.key, i);
    }
    let mut needed: Vec<(Digest, usize)> = Vec::new();
    let mut seen = HashSet::new();
    for (&key, &i) in &last_for_key {
        let digest = match (key, &page.changes[i].reg.value) {
            (Key::Blob { digest, .. }, Some(_)) | (Key::Manifest { digest, .. }, Some(_)) => digest,
            _ => continue,
        };
        if seen.insert(digest.clone()) {
            needed.push((digest.clone(), i));
        }
    }
    let concurrency = cfg.concurrency;
    let part_dir = core.peers.part_dir.clone();
    let results: Vec<(usize, Result<Fetched, PeerError>)> = futures::stream::iter(needed)
        .map(|(d, i)| {
            let part_dir = part_dir.clone();
            async move { (i, peer.fetch_content(core, &d, &part_dir).await) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut skip: HashSet<usize> = HashSet::new();
    for (i, r) in results {
        match r {
            Ok(Fetched::Stored) => {}
            Ok(Fetched::NotFound) => {
                // Gone at the peer: fine if a newer write superseded it there (it will come
                // later in the log); otherwise the peer lost content and we must not advance.
                let c = &page.changes[i];
                match peer.register(&c.key, Duration::from_secs(10)).await? {
                    Some(e) if e.reg.stamp > c.reg.stamp => {
                        skip.insert(i);
                    }
                    _ => {
                        return Err(PeerError::Status {
                            peer: peer.region.clone(),
                            status: 404,
                            what: format!("content of {:?} (the peer lost it)", c.key),
                        });
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    // Earlier writes to a key in this batch need no content of their own once superseded, but a
    // Present write whose content we skipped must not be applied.
    let last_seq = page.changes.last().map(|c| c.seq).unwrap_or(cursor);
    let first_at = page.changes.first().map(|c| c.at_ms);
    let last_at = page.changes.last().map(|c| c.at_ms);
    let last: HashSet<usize> = last_for_key.values().copied().collect();
    let changes = page.changes;
    let pr = peer.region.clone();
    let n = changes.len() as u64;
    let applied = core
        .write(move |w| {
            let mut out = Vec::new();
            for (i, c) in changes.into_iter().enumerate() {
                if skip.contains(&i) {
                    continue;
                }
                let needs_content = matches!(
                    (&c.key, &c.reg.value),
                    (Key::Blob { .. }, Some(Value::Blob { .. }))
                        | (Key::Manifest { .. }, Some(Value::Manifest(_)))
                );
                if needs_content {
                    let d = match &c.key {
                        Key::Blob { digest, .. } | Key::Manifest { digest, .. } => digest,
                        Key::Tag { .. } => continue,
                    };
                    if w.content(d)?.is_none() {
                        if !last.contains(&i) {
                            // Superseded within the batch and never fetched: skip this older write.
                            continue;
                        }
                        // Fetched but gone again (GC with a tiny grace): retry the batch.
                        return Err(ApiError::unavailable(format!(
                            "content {d} vanished before it was registered; retrying"
                        )));
                    }
                }
                let entry = Entry {
                    reg: c.reg,
                    origin_seq: c.seq,
                };
                if let Some(a) = w.merge(&c.key, entry)? {
                    out.push(a);
                }
            }
            w.set_cursor(&pr, last_seq)?;
            w.set_view(&pr, &view)?;
            Ok::<_, ApiError>(out)
        })
        .await
        .map_err(|e| PeerError::Local(format!("{:?}", e.code())))?;
    core.replicated(&applied);
    core.metrics.applied.get_or_create(&labels).inc_by(n);
    let now = now_ms();
    let remaining = page.head.saturating_sub(last_seq);
    state.update(&peer.region, |s| {
        s.cursor = last_seq;
        s.lag_changes = remaining;
        s.applied_total += n;
        s.last_delay_seconds = last_at.map(|t| now.saturating_sub(t) as f64 / 1000.0);
        s.oldest_pending_ms = if remaining > 0 { first_at } else { None };
    });
    core.metrics
        .lag_changes
        .get_or_create(&labels)
        .set(remaining as i64);
    if remaining == 0 {
        core.metrics.lag_seconds.get_or_create(&labels).set(0.0);
    }
    Ok(())
}

/// Drop tombstones that every replica has seen and that can no longer be overtaken by an older
/// write still in flight: each peer reported having applied the delete, and we have applied each
/// peer's log up to the head it had when it reported.
pub async fn sweep_tombstones(core: &Arc<Core>) {
    let meta = core.meta.clone();
    let peers: Vec<String> = core.peers.list.iter().map(|p| p.region.clone()).collect();
    let r = blocking(move || {
        let tombs = meta.tombstones()?;
        if tombs.is_empty() {
            return Ok(0u64);
        }
        let views = meta.views()?;
        let cursors = meta.cursors()?;
        let (expired, _) = meta.write(|w| -> Result<u64, ApiError> {
            let mut expired = 0;
            for (key, mut t) in tombs {
                let mut changed = false;
                for p in &peers {
                    if t.acks.contains_key(p) {
                        continue;
                    }
                    let Some(v) = views.get(p) else { continue };
                    let has = *p == t.origin
                        || v.applied.get(&t.origin).copied().unwrap_or(0) >= t.origin_seq;
                    if has {
                        t.acks.insert(p.clone(), v.head);
                        changed = true;
                    }
                }
                let done = peers.iter().all(|p| {
                    t.acks
                        .get(p)
                        .is_some_and(|h| cursors.get(p).copied().unwrap_or(0) >= *h)
                });
                if done {
                    w.forget(&key)?;
                    expired += 1;
                } else if changed {
                    w.set_tombstone(&key, &t)?;
                }
            }
            Ok(expired)
        })?;
        Ok(expired)
    })
    .await;
    match r {
        Ok(n) if n > 0 => {
            core.metrics.tombstones_expired.inc_by(n);
            tracing::debug!(expired = n, "tombstones expired");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = ?e.code(), "tombstone sweep failed"),
    }
}

/// Serve a page of this replica's log (the long poll).
pub async fn serve_changes(
    core: &Arc<Core>,
    since: u64,
    limit: usize,
    wait: Duration,
) -> Result<peer::ChangesPage, ApiError> {
    let mut rx = core.head.subscribe();
    let deadline = tokio::time::Instant::now() + wait.min(Duration::from_secs(60));
    loop {
        if *rx.borrow_and_update() > since {
            break;
        }
        tokio::select! {
            _ = core.shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => break,
            r = rx.changed() => if r.is_err() { break },
        }
    }
    let meta = core.meta.clone();
    let region = core.region.clone();
    let limit = limit.clamp(1, 10_000);
    blocking(move || {
        let changes = meta.changes_since(since, limit)?;
        Ok(peer::ChangesPage {
            region,
            head: meta.head()?,
            applied: meta.cursors()?,
            changes,
        })
    })
    .await
}

/// Which regions have the write `entry` (as far as this replica knows).
pub fn holders(
    me: &str,
    entry: &Entry,
    views: &BTreeMap<String, PeerView>,
    peers: &[String],
) -> Vec<String> {
    let origin = &entry.reg.stamp.region;
    let mut out = vec![me.to_string()];
    for p in peers {
        let has = p == origin
            || views
                .get(p)
                .and_then(|v| v.applied.get(origin))
                .is_some_and(|s| *s >= entry.origin_seq);
        if has {
            out.push(p.clone());
        }
    }
    out.sort();
    out
}
