//! Fresh keyspaces: unique names, so tests run in parallel on one node.

use scylla::client::session::Session;

/// Replication of test keyspaces (one node).
pub const REPLICATION: &str = "{'class': 'SimpleStrategy', 'replication_factor': 1}";

/// A unique keyspace name starting with `prefix` (at most 48 characters).
pub fn keyspace_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut name = format!("{prefix}_{id}");
    name.truncate(48);
    name
}

/// A new keyspace starting with `prefix`, migrated with every migration,
/// on the Cassandra of the tests.
pub async fn migrated_keyspace(prefix: &str) -> (Session, String) {
    let session = crate::servers::cassandra().await;
    let keyspace = keyspace_name(prefix);
    sluice_cql::migrate(&session, &keyspace, REPLICATION)
        .await
        .unwrap_or_else(|err| panic!("migrating the test keyspace {keyspace}: {err}"));
    (session, keyspace)
}

/// Drops `keyspace` (tests clean up after themselves).
pub async fn drop_keyspace(session: &Session, keyspace: &str) {
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
        .await
        .unwrap_or_else(|err| panic!("dropping keyspace {keyspace}: {err}"));
}
