//! Idempotency keys on both ledger back ends: the claim/settle state
//! machine, a lapsed lease, and concurrent claims of one key (exactly one
//! wins). The Cassandra run uses a migrated keyspace of its own.

use std::sync::Arc;
use std::time::Duration;

use sluice_recorder::{
    AnyLedger, CqlLedger, EmbeddedLedger, IdempotencyKeys, KeyClaim, KeyOutcome,
};

use crate::conformance::fresh;

const LEASE: u64 = 60_000;
const TTL: u64 = 86_400_000;

async fn state_machine(l: &AnyLedger) {
    let (tenant, key) = (fresh("tenant"), fresh("key"));
    let claim = |h: &'static str| l.claim_key(&tenant, &key, h, LEASE);
    assert_eq!(claim("a").await.expect("claim"), KeyClaim::Started(vec![]));
    assert_eq!(claim("b").await.expect("claim"), KeyClaim::InFlight);
    let failed = KeyOutcome::Failed(vec!["m1".into(), "m2".into()]);
    let settle = |h: &'static str, o: KeyOutcome| {
        let (tenant, key) = (tenant.clone(), key.clone());
        async move {
            l.settle_key(&tenant, &key, h, &o, TTL)
                .await
                .expect("settle")
        }
    };
    assert!(
        !settle("b", failed.clone()).await,
        "only the holder settles"
    );
    assert!(settle("a", failed).await);
    let reuse = KeyClaim::Started(vec!["m1".into(), "m2".into()]);
    assert_eq!(
        claim("c").await.expect("claim"),
        reuse,
        "a retry reuses the ids"
    );
    assert!(settle("c", KeyOutcome::Done(vec![1, 2, 3])).await);
    assert_eq!(
        claim("d").await.expect("claim"),
        KeyClaim::Done(vec![1, 2, 3])
    );
}

async fn lapsed_lease(l: &AnyLedger) {
    let (tenant, key) = (fresh("tenant"), fresh("key"));
    let first = l.claim_key(&tenant, &key, "a", 1_000).await.expect("claim");
    assert_eq!(first, KeyClaim::Started(vec![]));
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let again = l.claim_key(&tenant, &key, "b", LEASE).await.expect("claim");
    assert_eq!(
        again,
        KeyClaim::Started(vec![]),
        "an unsettled claim lapses"
    );
    let late = KeyOutcome::Done(vec![9]);
    let settled = l
        .settle_key(&tenant, &key, "a", &late, TTL)
        .await
        .expect("settle");
    assert!(!settled, "the lapsed holder settles nothing");
}

async fn one_of_many_wins(l: Arc<AnyLedger>) {
    let (tenant, key) = (fresh("tenant"), fresh("key"));
    let claims = (0..8).map(|i| {
        let (l, tenant, key) = (l.clone(), tenant.clone(), key.clone());
        tokio::spawn(async move { l.claim_key(&tenant, &key, &format!("h{i}"), LEASE).await })
    });
    let mut started = 0;
    for claim in futures::future::join_all(claims).await {
        match claim.expect("task").expect("claim") {
            KeyClaim::Started(_) => started += 1,
            KeyClaim::InFlight => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        started, 1,
        "exactly one of eight concurrent claims holds the key"
    );
}

async fn all(l: AnyLedger) {
    let l = Arc::new(l);
    state_machine(&l).await;
    lapsed_lease(&l).await;
    one_of_many_wins(l).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_ledger_keeps_idempotency_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = EmbeddedLedger::open(dir.path(), 30, 7).expect("open");
    all(ledger.into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_ledger_keeps_idempotency_keys() {
    let (session, ks) = sluice_testkit::cql::migrated_keyspace("keys").await;
    let ledger = CqlLedger::prepare(session, &ks, 30, 7)
        .await
        .expect("prepare");
    all(ledger.into()).await;
    let admin = sluice_testkit::servers::cassandra().await;
    sluice_testkit::cql::drop_keyspace(&admin, &ks).await;
}
