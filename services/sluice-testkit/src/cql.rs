//! Fresh keyspaces: unique names, so tests run in parallel on one node.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::Statement;

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

/// Drops `keyspace` (tests clean up after themselves). A schema change on a
/// node busy with other tests' writes can outlast the driver's 30 s request
/// timeout while still completing on the server, so the drop gets two
/// minutes per try and is tried again (it is idempotent) before giving up.
pub async fn drop_keyspace(session: &Session, keyspace: &str) {
    let mut statement = Statement::new(format!("DROP KEYSPACE IF EXISTS {keyspace}"));
    statement.set_request_timeout(Some(Duration::from_secs(120)));
    let mut tries = 0;
    loop {
        tries += 1;
        match session.query_unpaged(statement.clone(), ()).await {
            Ok(_) => return,
            Err(err) if tries < 3 => {
                eprintln!("dropping keyspace {keyspace} (try {tries}): {err}; trying again")
            }
            Err(err) => panic!("dropping keyspace {keyspace}: {err} after {tries} tries"),
        }
    }
}
