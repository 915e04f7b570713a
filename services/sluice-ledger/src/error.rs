use std::time::Duration;

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// No contact point answered.
    #[error(
        "ScyllaDB/Cassandra is not reachable at {contact_points} (tried for {timeout:?}): {source}. \
         Start it with `deploy/servers/cassandra.sh start`, or point SLUICE_CASSANDRA at a running node"
    )]
    Unreachable {
        contact_points: String,
        timeout: Duration,
        #[source]
        source: scylla::errors::NewSessionError,
    },
}
