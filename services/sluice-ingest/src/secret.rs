//! Hashed secrets: the type and functions live in `sluice_node::secret`
//! (control checks its tokens with them too); re-exported here so ingest's
//! callers keep their paths.

pub use sluice_node::secret::{SecretHash, hash_password, hash_secret};
