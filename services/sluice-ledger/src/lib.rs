//! The ScyllaDB back end of the Sluice ledger.
//!
//! Sluice keeps message status, counters, reputation, suppressions, warm-up
//! state, IP leases and configuration in keyspace `sluice`. Only CQL that
//! both ScyllaDB and Apache Cassandra 5 accept is used. This crate opens the
//! session and turns "no server" into an error that says which server and
//! how to start it.

mod config;
mod error;

pub use config::{LedgerConfig, connect};
pub use error::LedgerError;
