//! Volume replication.
#![forbid(unsafe_code)]

pub mod error;
pub mod progress;
pub mod repo;
pub mod snapshot;
pub mod source;
pub mod spec;
pub mod store;

pub use error::VolumeError;
pub use rustic_core;
