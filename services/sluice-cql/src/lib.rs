//! Sluice's ScyllaDB / Cassandra keyspace: how to reach it and what is in it.
//!
//! This crate opens the CQL session ([`CqlConfig`], [`connect`]) and owns the
//! whole schema: every table of every service is created by a versioned
//! migration in `migrations/NNNN_name.cql`, applied in order by [`migrate`]
//! (`sluice migrate`). No other crate creates tables. A service that works on
//! the keyspace calls [`require_tables`] with the tables it uses
//! ([`RECORDER_TABLES`], [`CONTROL_TABLES`], [`SENDER_TABLES`]) before preparing statements, so
//! an unmigrated keyspace fails with an error that names the missing table
//! and says to run `sluice migrate`.
//!
//! Only CQL that both ScyllaDB and Apache Cassandra 5 accept is used.

mod config;
mod error;
mod schema;
mod tables;

pub use config::{CqlConfig, connect};
pub use error::CqlError;
pub use schema::{MIGRATIONS, Migration, migrate};
pub use tables::{
    CONTROL_TABLES, RECORDER_TABLES, SENDER_TABLES, existing_tables, migrated_tables,
    require_tables,
};
