use std::time::Duration;

/// Errors of reaching the keyspace, migrating it, or finding it migrated.
#[derive(Debug, thiserror::Error)]
pub enum CqlError {
    /// No contact point answered.
    #[error(
        "ScyllaDB/Cassandra is not reachable at {contact_points} (tried for {timeout:?}): {source}. \
         Start it with `deploy/servers/cassandra.sh start`, or point SLUICE_CASSANDRA at a running node"
    )]
    Unreachable {
        contact_points: String,
        timeout: Duration,
        #[source]
        source: Box<scylla::errors::NewSessionError>,
    },
    /// A table a service needs is not in the keyspace: it was never migrated
    /// (or migrated by an older `sluice`).
    #[error(
        "table {keyspace}.{table} does not exist: keyspace `{keyspace}` is not migrated. \
         Run `sluice migrate` (with keyspace = \"{keyspace}\") to create the schema"
    )]
    MissingTable { keyspace: String, table: String },
    /// A statement of a schema migration failed.
    #[error("migration {version} ({name}): {reason}")]
    Migration {
        version: u32,
        name: &'static str,
        reason: String,
    },
    /// Another statement (bookkeeping, schema checks) failed.
    #[error("Cassandra/ScyllaDB {context}: {reason}")]
    Statement { context: String, reason: String },
}

impl CqlError {
    /// A failed statement with what was being done.
    pub(crate) fn statement(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::Statement {
            context: context.into(),
            reason: err.to_string(),
        }
    }
}
