//! Volume replication: continuous, asynchronous replication of a directory (a persistent
//! volume's mount) into a restic-format repository in the paired region's object storage,
//! a warm standby there, restore of any snapshot, and the replication lag (RPO) measured.
//!
//! The repository format is restic's (version 2, zstd), written through `rustic_core`, so
//! Debian's `restic` can list, check and restore everything Tandem writes. Storage is an
//! `object_store` (a local directory, S3, Azure Blob or GCS) behind [`store::Store`].
//!
//! Owns: the agent ([`agent::run_agent`]), the standby ([`standby::run_standby`],
//! [`standby::activate`]), one-off operations on a repository ([`repo::Repo`]), and the
//! status and metrics of all of it ([`status::Status`]). Does not own: config parsing (that is
//! `tandem-config`'s `[volume]` section, resolved here into a [`spec::VolumeSpec`]), the admin
//! HTTP server, or printing (progress goes through [`progress::ProgressSink`]).
//!
//! Embedding (what `tandem up` calls):
//!
//! ```no_run
//! # async fn lab(cfg: tandem_config::volume::VolumeConfig) -> Result<(), tandem_volume::VolumeError> {
//! use std::sync::Arc;
//! use tandem_volume::{Direction, Status, VolumeSpec};
//! let status = Arc::new(Status::new());
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let tracker = tokio_util::task::TaskTracker::new();
//! for v in &cfg.volumes {
//!     let spec = Arc::new(VolumeSpec::new(&cfg, v, Direction::Forward)?);
//!     tracker.spawn(tandem_volume::run_agent(spec.clone(), status.clone(), Default::default(), cancel.clone()));
//!     tracker.spawn(tandem_volume::run_standby(spec, status.clone(), cancel.clone()));
//! }
//! // ... on shutdown:
//! cancel.cancel();
//! tracker.close();
//! tracker.wait().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod agent;
pub mod error;
pub mod progress;
pub mod repo;
pub mod snapshot;
pub mod source;
pub mod spec;
pub mod standby;
pub mod status;
pub mod store;

pub use agent::{AgentOptions, run_agent};
pub use error::VolumeError;
pub use repo::{Repo, RestoreRequest, SnapshotInfo, SnapshotSel};
pub use rustic_core;
pub use spec::{Direction, VolumeSpec};
pub use standby::{activate, run_standby};
pub use status::Status;
