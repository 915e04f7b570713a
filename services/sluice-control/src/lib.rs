//! Sluice control: the source of truth for configuration — pools, source
//! IPs, warm-up plans, site policies, tenants and suppressions — served over
//! gRPC (`sluice.v1.Control`) with a Watch stream that nodes follow.
//!
//! The configuration lives in a [`ConfigStore`]: [`EmbeddedStore`] (fjall in
//! a data directory, for `sluice dev` and single machines) or [`CqlStore`]
//! (Cassandra/ScyllaDB). [`run`] serves it; [`admin`] is the operator CLI.

pub mod admin;
mod config;
mod error;
mod node;
mod record;
mod service;
mod store;
pub mod validate;
mod watch;

use std::path::Path;
use std::sync::Arc;

pub use config::{ControlConfig, StoreKind};
pub use error::ControlError;
pub use node::{ControlBackends, ControlListeners};
pub use record::{Kind, Record};
pub use service::{ControlService, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, run};
pub use store::{ConfigStore, CqlStore, EmbeddedStore, control_schema};
pub use watch::POLL_INTERVAL;

/// Opens (or creates) the embedded store in `dir`, ready for [`run`].
pub fn open_embedded(dir: &Path) -> Result<Arc<dyn ConfigStore>, ControlError> {
    Ok(Arc::new(EmbeddedStore::open(dir)?))
}

/// Connects to Cassandra/ScyllaDB and opens `keyspace` (tables created by
/// [`control_schema`]), ready for [`run`].
pub async fn open_cql(
    config: &sluice_ledger::LedgerConfig,
    keyspace: &str,
) -> Result<Arc<dyn ConfigStore>, ControlError> {
    Ok(Arc::new(CqlStore::connect(config, keyspace).await?))
}
