//! Errors of volume replication. Each says what failed and what to do next.

use std::path::PathBuf;

/// Everything that can go wrong replicating, restoring or standing by.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The repository's storage could not be reached, read or written.
    #[error("repository {location}: {op} failed: {message} (hint: {hint})")]
    Repository {
        /// Where (credentials removed).
        location: String,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        message: String,
        /// What to do.
        hint: String,
    },
    /// A repository operation failed (rustic's error, with its own guidance).
    #[error("volume {volume}: {op}: {message}")]
    Rustic {
        /// The volume.
        volume: String,
        /// What was being done.
        op: &'static str,
        /// rustic's message.
        message: String,
    },
    /// The password could not be read.
    #[error("volume {volume}: cannot read the repository password: {message} (hint: {hint})")]
    Password {
        /// The volume.
        volume: String,
        /// Why.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The repository exists but the password does not open it.
    #[error(
        "volume {volume}: the password does not open repository {location} (hint: use the password it was created with; `restic -r {location} key list` shows its keys)"
    )]
    WrongPassword {
        /// The volume.
        volume: String,
        /// Where.
        location: String,
    },
    /// A local file or directory could not be used.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the path is.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A hook failed, so the snapshot was skipped.
    #[error(
        "volume {volume}: {which} hook {command:?} {message} (hint: fix the hook or remove it from the config; the snapshot was skipped and is retried)"
    )]
    Hook {
        /// The volume.
        volume: String,
        /// `pre` or `post`.
        which: &'static str,
        /// The command.
        command: String,
        /// What happened.
        message: String,
    },
    /// Shutdown was requested while a snapshot was being taken; nothing was written that a
    /// snapshot refers to, and uploaded data is reused by the next run.
    #[error(
        "volume {volume}: snapshot abandoned on shutdown (uploaded data is kept and reused by the next snapshot)"
    )]
    Abandoned {
        /// The volume.
        volume: String,
    },
    /// The volume was activated in the other region; this side must not replicate over it.
    #[error(
        "volume {volume}: fenced: its standby was activated in {region} at {at}, so this copy is stale (hint: run `tandem volume reverse {volume}` in {region} to replicate back, then activate here)"
    )]
    Fenced {
        /// The volume.
        volume: String,
        /// Where it was activated.
        region: String,
        /// When.
        at: String,
    },
    /// No snapshot matches the request.
    #[error("volume {volume}: {message}")]
    NoSnapshot {
        /// The volume.
        volume: String,
        /// What was asked for.
        message: String,
    },
    /// The request does not fit the volume's configuration or state.
    #[error("volume {volume}: {message}")]
    Invalid {
        /// The volume.
        volume: String,
        /// Why, and what to do.
        message: String,
    },
    /// A blocking task failed to run.
    #[error("internal error: {0}")]
    Internal(String),
}

impl VolumeError {
    pub(crate) fn rustic(volume: &str, op: &'static str, e: &rustic_core::RusticError) -> Self {
        VolumeError::Rustic {
            volume: volume.to_string(),
            op,
            message: e.display_log().trim_start_matches("Error: ").to_string(),
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VolumeError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Whether trying again later may succeed (a link or storage problem) rather than needing
    /// an operator (a bad password, a fence).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            VolumeError::WrongPassword { .. }
                | VolumeError::Password { .. }
                | VolumeError::Fenced { .. }
                | VolumeError::Invalid { .. }
        )
    }
}
