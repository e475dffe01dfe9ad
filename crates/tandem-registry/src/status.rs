//! Replication status as JSON: per replica (peers, cursors, lag in changes and seconds) and per
//! repository (each tag and manifest, and which replicas hold the current write).

use std::sync::Arc;

use serde::Serialize;

use crate::core::{Core, blocking};
use crate::meta::{Key, Value};
use crate::oci::ApiError;
use crate::replication::{PeerStatus, ReplicationState, holders};

/// A replica's status.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    /// Region.
    pub region: String,
    /// Public URL.
    pub url: String,
    /// This replica's log head.
    pub head: u64,
    /// Peers and how far behind this replica is on each.
    pub peers: Vec<PeerStatus>,
    /// Counts of repositories, registers, content, tombstones, uploads.
    pub counts: std::collections::BTreeMap<&'static str, u64>,
    /// Whether every peer is caught up.
    pub in_sync: bool,
}

/// Status of one replica.
pub async fn replica(
    core: &Arc<Core>,
    state: &ReplicationState,
) -> Result<ReplicaStatus, ApiError> {
    let meta = core.meta.clone();
    let (head, counts) = blocking(move || Ok((meta.head()?, meta.counts()?))).await?;
    let peers = state.snapshot();
    let in_sync = peers
        .iter()
        .all(|p| p.lag_changes == 0 && p.last_error.is_none());
    Ok(ReplicaStatus {
        region: core.region.clone(),
        url: core.url.clone(),
        head,
        peers,
        counts,
        in_sync,
    })
}

/// A tag's replication status.
#[derive(Debug, Clone, Serialize)]
pub struct TagStatus {
    /// Tag.
    pub tag: String,
    /// Digest it points at here, `None` if deleted.
    pub digest: Option<String>,
    /// Region that wrote the current value.
    pub origin: String,
    /// Wall time of the write (ms).
    pub written_ms: u64,
    /// Regions known to hold this write.
    pub replicas: Vec<String>,
}

/// A repository's replication status.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryStatus {
    /// Repository.
    pub repository: String,
    /// Region answering.
    pub region: String,
    /// Tags, present and tombstoned.
    pub tags: Vec<TagStatus>,
}

/// Status of one repository.
pub async fn repository(core: &Arc<Core>, repo: &str) -> Result<RepositoryStatus, ApiError> {
    let meta = core.meta.clone();
    let repo_s = repo.to_string();
    let me = core.region.clone();
    let peers: Vec<String> = core.peers.list.iter().map(|p| p.region.clone()).collect();
    let tags = blocking(move || {
        let views = meta.views()?;
        let entries = meta.tag_entries(&repo_s)?;
        Ok(entries
            .into_iter()
            .map(|(tag, e)| TagStatus {
                digest: match e.value() {
                    Some(Value::Tag { digest }) => Some(digest.to_string()),
                    _ => None,
                },
                origin: e.reg.stamp.region.clone(),
                written_ms: e.reg.stamp.hlc.wall_ms,
                replicas: holders(&me, &e, &views, &peers),
                tag,
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let _ = Key::Tag {
        repo: String::new(),
        tag: String::new(),
    };
    Ok(RepositoryStatus {
        repository: repo.to_string(),
        region: core.region.clone(),
        tags,
    })
}
