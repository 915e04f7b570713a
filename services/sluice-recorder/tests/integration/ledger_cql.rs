//! The ledger conformance suite against Cassandra (a fresh keyspace per test).

use sluice_recorder::{AnyLedger, CqlLedger};

use crate::common::{cassandra, drop_keyspace};
use crate::conformance;

/// A migrated fresh keyspace and a `CqlLedger` on it (own session).
async fn fresh_ledger() -> (CqlLedger, scylla::client::session::Session, String) {
    let admin = cassandra().await;
    let ks = format!(
        "ledger_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..20]
    );
    let replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    sluice_cql::migrate(&admin, &ks, replication)
        .await
        .expect("migrate fresh keyspace");
    (open(&ks).await, admin, ks)
}

async fn open(ks: &str) -> CqlLedger {
    CqlLedger::prepare(cassandra().await, ks, 30, 7)
        .await
        .expect("prepare statements")
}

#[tokio::test]
async fn cassandra_ledger_passes_the_conformance_suite() {
    let (ledger, admin, ks) = fresh_ledger().await;
    conformance::all(&ledger).await;
    // The same checks through the run-time dispatch the node uses.
    conformance::all(&AnyLedger::from(ledger)).await;
    drop_keyspace(&admin, &ks).await;
}

#[tokio::test]
async fn cassandra_ledger_keeps_everything_across_a_new_session() {
    let (ledger, admin, ks) = fresh_ledger().await;
    let fixture = conformance::write_fixture(&ledger).await;
    drop(ledger);
    conformance::check_fixture(&open(&ks).await, &fixture).await;
    drop_keyspace(&admin, &ks).await;
}

#[tokio::test]
async fn an_unmigrated_keyspace_is_refused_with_the_fix() {
    let ks = format!(
        "nothing_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..20]
    );
    let err = match CqlLedger::prepare(cassandra().await, &ks, 30, 7).await {
        Ok(_) => panic!("prepared statements on a keyspace that does not exist"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains(&format!("{ks}.message_events")), "{err}");
    assert!(err.contains("sluice migrate"), "{err}");
}
