//! Sluice control: the source of truth for configuration — pools, source
//! IPs, warm-up plans, site policies, tenants, providers and suppressions —
//! served over gRPC (`sluice.v1.Control`) with a Watch stream that nodes
//! follow. Every
//! call needs a bearer token of a configured credential (admin, operator or
//! node role) unless the service is explicitly left open.
//!
//! The configuration lives in a [`ConfigStore`]: [`EmbeddedConfigStore`]
//! (fjall in a data directory, for `sluice dev` and single machines) or
//! [`CqlConfigStore`] (Cassandra/ScyllaDB, in a keyspace `sluice migrate`
//! created). [`run`] serves it. The operator CLI (`sluice admin`) lives in
//! the `sluice` binary and talks to the service over gRPC.

mod auth;
mod config;
mod error;
pub mod metrics;
mod node;
mod record;
mod service;
mod store;
pub mod validate;
pub mod validate_webhooks;
mod watch;

use std::path::Path;
use std::sync::Arc;

pub use auth::UNAUTHENTICATED;
pub use config::{ControlConfig, Credential, Role, StoreKind};
pub use error::ControlError;
pub use node::{ControlBackends, ControlListeners};
pub use record::{Kind, Record};
pub use service::{ControlService, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, run};
pub use store::{ConfigStore, CqlConfigStore, EmbeddedConfigStore};
pub use watch::POLL_INTERVAL;

/// Opens (or creates) the embedded store in `dir`, ready for [`run`].
pub fn open_embedded(dir: &Path) -> Result<Arc<dyn ConfigStore>, ControlError> {
    Ok(Arc::new(EmbeddedConfigStore::open(dir)?))
}

/// Connects to Cassandra/ScyllaDB and opens `keyspace` (migrated by
/// `sluice migrate`), ready for [`run`].
pub async fn open_cql(
    config: &sluice_cql::CqlConfig,
    keyspace: &str,
) -> Result<Arc<dyn ConfigStore>, ControlError> {
    Ok(Arc::new(CqlConfigStore::connect(config, keyspace).await?))
}
