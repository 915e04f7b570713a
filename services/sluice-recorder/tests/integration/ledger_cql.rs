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

/// One suppression list per tenant: a hard bounce the recorder writes is in
/// the list control serves (`ListSuppressions`), and removing it through
/// control lifts it for ingest's check (`Ledger::suppressed`) too.
#[tokio::test]
async fn recorder_and_control_share_one_suppression_list() {
    use sluice_control::ConfigStore;
    use sluice_proto::v1::{BounceClass, Event, EventKind};
    use sluice_recorder::Ledger;

    let (ledger, admin, ks) = fresh_ledger().await;
    let control = sluice_control::CqlConfigStore::open(cassandra().await, &ks)
        .await
        .expect("control store on the same keyspace");
    let tenant = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let bounce = Event {
        event_id: uuid::Uuid::new_v4().to_string(),
        message_id: "m1".into(),
        tenant: tenant.clone(),
        recipient: "gone@example.com".into(),
        kind: EventKind::Bounced.into(),
        bounce_class: BounceClass::BadMailbox.into(),
        ..Event::default()
    };
    ledger
        .write_rows(&[&bounce], 1_800_000_000)
        .await
        .expect("write the bounce");
    let asked = vec!["gone@example.com".to_owned()];
    assert_eq!(
        ledger.suppressed(&tenant, &asked).await.expect("check"),
        asked
    );
    let listed = control
        .list_suppressions(&tenant, "", 10)
        .await
        .expect("list");
    assert_eq!(
        listed.len(),
        1,
        "control lists the recorder's suppression: {listed:?}"
    );
    assert_eq!(listed[0].address, "gone@example.com");
    assert_eq!(listed[0].reason, "hard_bounce");
    let removed = control
        .remove_suppression(&tenant, "gone@example.com")
        .await
        .expect("remove");
    assert!(removed.is_some(), "control removed it");
    assert!(
        ledger
            .suppressed(&tenant, &asked)
            .await
            .expect("check")
            .is_empty(),
        "removed through control, no longer suppressed for ingest"
    );
    drop_keyspace(&admin, &ks).await;
}
