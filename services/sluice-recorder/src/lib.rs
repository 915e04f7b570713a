//! Sluice recorder: consumes `sluice.events` from Kafka in batches and writes
//! them to ScyllaDB/Cassandra — per-message status and history, campaign
//! timelines, counters per (source IP, site, day) / (tenant, day) /
//! (campaign, day), hourly counters for rolling windows, suppressions from
//! hard bounces, complaints and unsubscribes — de-duplicated by
//! (message id, attempt, kind). It scores reputation per (source IP, site) and
//! per tenant and serves everything over the `sluice.v1.Query` gRPC service.
//!
//! The ledger is a trait, [`Ledger`], with two back ends: [`Store`]
//! (ScyllaDB/Cassandra) and [`EmbeddedLedger`] (fjall in a data directory);
//! the node holds either as an [`AnyLedger`].
//!
//! Layout: [`reputation`] and [`record`] are pure; `store*` hold the CQL;
//! `ledger*` the trait and the embedded back end;
//! `writer` retries a batch's writes; `consumer` commits offsets only after
//! them; `scoring` turns hourly counters into signals; `query` is the gRPC
//! service; [`run`] wires them; [`client`] is the CLI side; [`migrate`]
//! applies the schema. See docs/recorder.md.

pub mod client;
mod config;
mod consumer;
mod error;
mod ledger;
mod ledger_embedded;
mod ledger_embedded_read;
mod ledger_keys;
mod metrics;
mod query;
pub mod record;
pub mod reputation;
mod schema;
mod scoring;
mod service;
mod store;
mod store_read;
pub mod time;
mod writer;

pub use config::{LedgerKind, RecorderConfig, ReputationConfig};
pub use error::RecorderError;
pub use ledger::{AnyLedger, Ledger};
pub use ledger_embedded::EmbeddedLedger;
pub use metrics::Metrics;
pub use query::QueryService;
pub use schema::{MIGRATIONS, Migration, migrate};
pub use scoring::{Dirty, score_once};
pub use service::{RecorderBackends, RecorderListeners, run};
pub use store::{Claim, Store};

/// Connects to the configured cluster and applies the schema (`sluice migrate`).
/// Returns the versions applied now; empty when it was already current.
/// The embedded ledger needs no migration: nothing is applied.
pub async fn migrate_configured(config: &RecorderConfig) -> Result<Vec<u32>, RecorderError> {
    config.validated()?;
    if config.ledger == LedgerKind::Embedded {
        return Ok(Vec::new());
    }
    let session = sluice_ledger::connect(&config.ledger()).await?;
    migrate(&session, &config.keyspace, &config.replication).await
}
