//! A volume's replication, resolved for one direction. Forward replicates the volume's source
//! into the repository in the paired region and keeps the standby there; after a failover,
//! reverse replicates the activated standby back into the volume's own region, with the old
//! source directory as the standby of that direction (so failing back is another activate).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tandem_config::volume::{
    Hooks, Password, Repository as RepoConfig, Retention, Volume, VolumeConfig,
};

use crate::error::VolumeError;
use crate::store::StoreTuning;

/// Which way data flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Source region to its pair (normal operation).
    Forward,
    /// From the activated standby back to the original region (after a failover).
    Reverse,
}

impl Direction {
    /// `forward` or `reverse`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
        }
    }
}

/// Where a standby lives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StandbySpec {
    /// Its region.
    pub region: String,
    /// The directory kept restored.
    pub dir: PathBuf,
    /// How often the repository is polled for a newer snapshot.
    pub poll_interval: Duration,
}

/// Everything the agent and the standby need for one volume in one direction.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeSpec {
    /// The volume's name (the snapshots' label).
    pub name: String,
    /// Which way.
    pub direction: Direction,
    /// The region whose directory is replicated.
    pub source_region: String,
    /// The replicated directory.
    pub source: PathBuf,
    /// The repository written to.
    pub repository: RepoConfig,
    /// Its password.
    pub password: Password,
    /// Shortest time between snapshots.
    pub interval: Duration,
    /// Full scan period.
    pub scan_interval: Duration,
    /// Lag alert threshold.
    pub lag_alert: Duration,
    /// zstd level.
    pub compression: i32,
    /// Upload concurrency and bandwidth.
    #[serde(skip)]
    pub tuning: StoreTuning,
    /// Excluded globs.
    pub exclude: Vec<String>,
    /// Hooks.
    pub hooks: Hooks,
    /// Retention.
    pub retention: Option<Retention>,
    /// The standby of this direction.
    pub standby: Option<StandbySpec>,
    /// Local state of this volume and direction.
    pub state_dir: PathBuf,
}

impl VolumeSpec {
    /// Resolve a configured volume for a direction.
    pub fn new(cfg: &VolumeConfig, v: &Volume, direction: Direction) -> Result<Self, VolumeError> {
        let state_dir = cfg.state_dir.join(&v.name).join(direction.as_str());
        let tuning = StoreTuning {
            concurrency: v.concurrency,
            bandwidth: v.bandwidth,
        };
        let (source_region, source, repository, standby) = match direction {
            Direction::Forward => (
                v.region.clone(),
                v.source.clone(),
                v.repository.clone(),
                v.standby.as_ref().map(|s| StandbySpec {
                    region: s.region.clone(),
                    dir: s.dir.clone(),
                    poll_interval: s.poll_interval,
                }),
            ),
            Direction::Reverse => {
                let (Some(sb), Some(rev)) = (&v.standby, &v.reverse) else {
                    return Err(VolumeError::Invalid {
                        volume: v.name.clone(),
                        message: "reverse replication needs both [volume.volumes.NAME.standby] and [volume.volumes.NAME.reverse] (a repository in the volume's own region)".into(),
                    });
                };
                (
                    sb.region.clone(),
                    sb.dir.clone(),
                    rev.clone(),
                    Some(StandbySpec {
                        region: v.region.clone(),
                        dir: v.source.clone(),
                        poll_interval: sb.poll_interval,
                    }),
                )
            }
        };
        Ok(VolumeSpec {
            name: v.name.clone(),
            direction,
            source_region,
            source,
            repository,
            password: v.password.clone(),
            interval: v.interval,
            scan_interval: v.scan_interval,
            lag_alert: v.lag_alert,
            compression: v.compression,
            tuning,
            exclude: v.exclude.clone(),
            hooks: v.hooks.clone(),
            retention: v.retention.clone(),
            standby,
            state_dir,
        })
    }

    /// The repository password, read from where the config says.
    pub fn password(&self) -> Result<String, VolumeError> {
        let fail = |message: String, hint: &str| VolumeError::Password {
            volume: self.name.clone(),
            message,
            hint: hint.to_string(),
        };
        let pw = match &self.password {
            Password::Value(s) => s.expose().to_string(),
            Password::Env(name) => std::env::var(name).map_err(|_| {
                fail(
                    format!("environment variable {name} is not set"),
                    "export it before starting tandem (the same password in both regions)",
                )
            })?,
            Password::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    fail(
                        format!("{}: {e}", path.display()),
                        "create the file with the password on its first line",
                    )
                })?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        if pw.is_empty() {
            return Err(fail(
                "the password is empty".into(),
                "set a non-empty password",
            ));
        }
        Ok(pw)
    }
}
