//! Volume replication.
pub use rustic_core;
