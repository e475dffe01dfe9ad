//! What the agents and standbys report: a JSON status for the admin API and `tandem status`,
//! and Prometheus metrics with stable names. The replication lag is the RPO made visible: the
//! age of the oldest change in the source that is not yet in a snapshot in the paired region,
//! i.e. how much history a failure of the source region would lose right now.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::repo::SnapshotInfo;
use crate::source::FileIssue;

/// The state of one replication agent.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AgentStatus {
    /// The volume.
    pub volume: String,
    /// `forward` or `reverse`.
    pub direction: String,
    /// The region whose directory is replicated.
    pub region: String,
    /// The repository (credentials removed).
    pub repository: String,
    /// `starting`, `idle`, `snapshotting`, `retrying`, `fenced` or `stopped`.
    pub state: String,
    /// Replication lag (seconds): age of the oldest change not yet in the paired region.
    pub lag_seconds: f64,
    /// The configured alert threshold.
    pub lag_alert_seconds: f64,
    /// Whether the lag is above the threshold.
    pub alert: bool,
    /// When the oldest pending change was seen (RFC 3339), if any is pending.
    pub pending_since: Option<String>,
    /// Whether inotify watching works (else only periodic scans find changes).
    pub watching: bool,
    /// The newest snapshot this agent wrote.
    pub last_snapshot: Option<SnapshotInfo>,
    /// How long the last snapshot took.
    pub last_snapshot_seconds: Option<f64>,
    /// The last error, until the next success.
    pub last_error: Option<String>,
    /// Snapshots written since start.
    pub snapshots: u64,
    /// Failed attempts since start.
    pub failures: u64,
    /// Bytes uploaded since start.
    pub uploaded_bytes: u64,
    /// Files that changed while the last snapshot read them.
    pub changed_during_read: Vec<FileIssue>,
    /// Files the last snapshot could not read.
    pub unreadable: Vec<FileIssue>,
}

/// The state of one standby.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StandbyStatus {
    /// The volume.
    pub volume: String,
    /// The standby's region.
    pub region: String,
    /// The directory kept restored.
    pub dir: String,
    /// `waiting`, `restoring`, `current`, `retrying`, `activated` or `stopped`.
    pub state: String,
    /// The snapshot the directory holds.
    pub applied: Option<SnapshotInfo>,
    /// The newest snapshot in the repository.
    pub newest: Option<SnapshotInfo>,
    /// Age of the data the standby holds (now minus the applied snapshot's time), seconds.
    pub data_age_seconds: Option<f64>,
    /// How long the last apply took.
    pub last_apply_seconds: Option<f64>,
    /// Files written by the last apply.
    pub last_apply_files: Option<u64>,
    /// The last error, until the next success.
    pub last_error: Option<String>,
    /// When the standby was activated.
    pub activated_at: Option<String>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolLabels {
    volume: String,
    direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    volume: String,
    direction: String,
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StandbyLabels {
    volume: String,
    region: String,
}

/// Live status and metrics of every agent and standby in this process.
#[derive(Debug, Default)]
pub struct Status {
    agents: RwLock<BTreeMap<String, AgentStatus>>,
    standbys: RwLock<BTreeMap<String, StandbyStatus>>,
    lag: Family<VolLabels, Gauge<f64, AtomicU64>>,
    lag_alert: Family<VolLabels, Gauge>,
    snapshots: Family<ResultLabels, Counter>,
    uploaded: Family<VolLabels, Counter>,
    snapshot_seconds: Family<VolLabels, Gauge<f64, AtomicU64>>,
    standby_age: Family<StandbyLabels, Gauge<f64, AtomicU64>>,
    standby_applies: Family<StandbyLabels, Counter>,
}

impl Status {
    /// A new, empty status.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register the metrics (`tandem_volume_*`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tandem_volume_replication_lag_seconds",
            "Age of the oldest change not yet in a snapshot in the paired region (the RPO now)",
            self.lag.clone(),
        );
        registry.register(
            "tandem_volume_lag_alert",
            "1 when the replication lag is above the volume's lag_alert threshold",
            self.lag_alert.clone(),
        );
        registry.register(
            "tandem_volume_snapshots",
            "Snapshot attempts by result (written, unchanged, failed, abandoned)",
            self.snapshots.clone(),
        );
        registry.register(
            "tandem_volume_uploaded_bytes",
            "Bytes uploaded to the repository",
            self.uploaded.clone(),
        );
        registry.register(
            "tandem_volume_last_snapshot_seconds",
            "Duration of the last snapshot",
            self.snapshot_seconds.clone(),
        );
        registry.register(
            "tandem_volume_standby_data_age_seconds",
            "Age of the snapshot the standby directory holds",
            self.standby_age.clone(),
        );
        registry.register(
            "tandem_volume_standby_applies",
            "Snapshots applied to the standby directory",
            self.standby_applies.clone(),
        );
    }

    /// Update an agent's status.
    pub fn agent(&self, key: &str, f: impl FnOnce(&mut AgentStatus)) {
        if let Ok(mut m) = self.agents.write() {
            let s = m.entry(key.to_string()).or_default();
            f(s);
            let l = VolLabels {
                volume: s.volume.clone(),
                direction: s.direction.clone(),
            };
            self.lag.get_or_create(&l).set(s.lag_seconds);
            self.lag_alert.get_or_create(&l).set(i64::from(s.alert));
        }
    }

    pub(crate) fn count_snapshot(
        &self,
        volume: &str,
        direction: &str,
        result: &str,
        uploaded: u64,
        secs: f64,
    ) {
        self.snapshots
            .get_or_create(&ResultLabels {
                volume: volume.into(),
                direction: direction.into(),
                result: result.into(),
            })
            .inc();
        let l = VolLabels {
            volume: volume.into(),
            direction: direction.into(),
        };
        self.uploaded.get_or_create(&l).inc_by(uploaded);
        self.snapshot_seconds.get_or_create(&l).set(secs);
    }

    /// Update a standby's status.
    pub fn standby(&self, key: &str, f: impl FnOnce(&mut StandbyStatus)) {
        if let Ok(mut m) = self.standbys.write() {
            let s = m.entry(key.to_string()).or_default();
            f(s);
            if let Some(age) = s.data_age_seconds {
                self.standby_age
                    .get_or_create(&StandbyLabels {
                        volume: s.volume.clone(),
                        region: s.region.clone(),
                    })
                    .set(age);
            }
        }
    }

    pub(crate) fn count_apply(&self, volume: &str, region: &str) {
        self.standby_applies
            .get_or_create(&StandbyLabels {
                volume: volume.into(),
                region: region.into(),
            })
            .inc();
    }

    /// One agent's status.
    pub fn agent_status(&self, key: &str) -> Option<AgentStatus> {
        self.agents.read().ok()?.get(key).cloned()
    }

    /// One standby's status.
    pub fn standby_status(&self, key: &str) -> Option<StandbyStatus> {
        self.standbys.read().ok()?.get(key).cloned()
    }

    /// Everything, as JSON for the admin API: `{"agents": [...], "standbys": [...]}`.
    pub fn json(&self) -> serde_json::Value {
        let agents: Vec<AgentStatus> = self
            .agents
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let standbys: Vec<StandbyStatus> = self
            .standbys
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        serde_json::json!({ "agents": agents, "standbys": standbys })
    }
}
