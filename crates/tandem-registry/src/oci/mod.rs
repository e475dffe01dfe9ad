//! The OCI distribution protocol as pure functions: digests, names and routes, manifests,
//! ranges and the spec's errors. Nothing here touches sockets, storage or state.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod name;
pub mod range;

pub use digest::{Algorithm, Digest, Hasher};
pub use error::{ApiError, Code};
pub use name::{Reference, Route};
