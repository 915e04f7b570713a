//! Sluice recorder: consumes `sluice.events` from Kafka in batches and writes
//! them to ScyllaDB/Cassandra — per-message status and history, campaign
//! timelines, counters per (source IP, site, day) / (tenant, day) /
//! (campaign, day), hourly counters for rolling windows, suppressions from
//! hard bounces, complaints and unsubscribes — de-duplicated by
//! (message id, attempt, kind). It scores reputation per (source IP, site) and
//! per tenant and serves everything over the `sluice.v1.Query` gRPC service.
//!
//! The ledger is a trait, [`Ledger`], with two back ends: [`CqlLedger`]
//! (ScyllaDB/Cassandra, in a keyspace `sluice migrate` created; the schema
//! belongs to crate `sluice-cql`) and [`EmbeddedLedger`] (fjall in a data
//! directory); the node holds either as an [`AnyLedger`].
//!
//! Layout: [`reputation`] and [`record`] are pure; `ledger` is the trait;
//! `ledger_cql*` the CQL back end, `ledger_embedded*` the embedded one;
//! `writer` retries a batch's writes; `consumer` commits offsets only after
//! them; `scoring` turns hourly counters into signals; `query` is the gRPC
//! service; [`run`] wires them; [`client`] is a typed client of the Query
//! service. See docs/recorder.md.

pub mod auth;
pub mod client;
mod config;
mod consumer;
pub mod enrich;
mod error;
mod heartbeats;
mod heartbeats_cql;
mod heartbeats_embedded;
mod keys;
mod keys_cql;
mod keys_embedded;
mod ledger;
mod ledger_cql;
mod ledger_cql_read;
mod ledger_embedded;
mod ledger_embedded_read;
mod ledger_embedded_suppressions;
mod ledger_keys;
mod metrics;
mod parts;
mod query;
mod query_keys;
pub mod record;
pub mod reputation;
mod scoring;
mod service;
pub mod time;
pub mod webhook_log;
mod writer;
#[cfg(test)]
mod writer_replay_tests;

pub use auth::{QueryAuth, TenantKeys};
pub use config::{LedgerKind, RecorderConfig, ReputationConfig};
pub use error::RecorderError;
pub use heartbeats::IngestNodes;
pub use keys::{IdempotencyKeys, KeyClaim, KeyOutcome};
pub use ledger::{AnyLedger, Claim, Ledger};
pub use ledger_cql::CqlLedger;
pub use ledger_embedded::EmbeddedLedger;
pub use ledger_embedded_suppressions::SuppressionEntry;
pub use metrics::Metrics;
pub use query::{Authenticate, QueryService};
pub use scoring::{Dirty, score_once};
pub use service::{RecorderBackends, RecorderListeners, run};
