//! The ledger conformance suite against Cassandra (a fresh keyspace per test).

use sluice_recorder::{AnyLedger, Store};

use crate::common::{cassandra, drop_keyspace};
use crate::conformance;

/// A migrated fresh keyspace and a `Store` on it (own session).
async fn fresh_store() -> (Store, scylla::client::session::Session, String) {
    let admin = cassandra().await;
    let ks = format!(
        "ledger_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..20]
    );
    let replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    sluice_recorder::migrate(&admin, &ks, replication)
        .await
        .expect("migrate fresh keyspace");
    (open(&ks).await, admin, ks)
}

async fn open(ks: &str) -> Store {
    Store::prepare(cassandra().await, ks, 30, 7)
        .await
        .expect("prepare statements")
}

#[tokio::test]
async fn cassandra_ledger_passes_the_conformance_suite() {
    let (store, admin, ks) = fresh_store().await;
    conformance::all(&store).await;
    // The same checks through the run-time dispatch the node uses.
    conformance::all(&AnyLedger::from(store)).await;
    drop_keyspace(&admin, &ks).await;
}

#[tokio::test]
async fn cassandra_ledger_keeps_everything_across_a_new_session() {
    let (store, admin, ks) = fresh_store().await;
    let fixture = conformance::write_fixture(&store).await;
    drop(store);
    conformance::check_fixture(&open(&ks).await, &fixture).await;
    drop_keyspace(&admin, &ks).await;
}
