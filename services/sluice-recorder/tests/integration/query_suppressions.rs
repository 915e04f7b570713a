//! `CheckSuppressions` over a real tonic server on 127.0.0.1:0, on the
//! embedded ledger and on Cassandra: suppressions written by `write_rows`
//! come back for their tenant only; bad requests name the field.

use std::sync::Arc;

use sluice_proto::v1::{BounceClass, CheckSuppressionsRequest, Event};
use sluice_recorder::{AnyLedger, CqlLedger, EmbeddedLedger};

use crate::common::{bounce, cassandra, drop_keyspace, now_secs};
use crate::conformance::fresh;

fn ask(tenant: &str, addresses: &[String]) -> CheckSuppressionsRequest {
    CheckSuppressionsRequest {
        tenant: tenant.into(),
        addresses: addresses.to_vec(),
    }
}

async fn check_over_grpc(ledger: AnyLedger) {
    let tenant = fresh("tenant");
    let id = fresh("m");
    let hard = Event {
        tenant: tenant.clone(),
        ..bounce(&id, "192.0.2.1", "gmail", BounceClass::BadMailbox)
    };
    crate::common::rows(&ledger, &hard, now_secs()).await;
    let server = sluice_testkit::query::serve(Arc::new(ledger)).await;
    let url = server.url.clone();
    let mut client = sluice_testkit::query::admin(url).await.expect("connect");
    let gone = hard.recipient.to_uppercase();
    let fine = fresh("fine") + "@example.com";
    let addresses = [fine.clone(), gone.clone()];
    let answer = client
        .check_suppressions(ask(&tenant, &addresses))
        .await
        .expect("check")
        .into_inner();
    assert_eq!(answer.suppressed, vec![gone]);
    let other = client
        .check_suppressions(ask(&fresh("tenant"), &addresses))
        .await
        .expect("check another tenant")
        .into_inner();
    assert!(other.suppressed.is_empty(), "{other:?}");

    let err = client
        .check_suppressions(ask("", &addresses))
        .await
        .expect_err("empty tenant");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("tenant"), "{}", err.message());
    let too_many = vec![fine; 1_001];
    let err = client
        .check_suppressions(ask(&tenant, &too_many))
        .await
        .expect_err("too many addresses");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("addresses"), "{}", err.message());
}

#[tokio::test]
async fn check_suppressions_over_grpc_on_the_embedded_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = EmbeddedLedger::open(dir.path(), 30, 7).expect("open");
    check_over_grpc(ledger.into()).await;
}

#[tokio::test]
async fn check_suppressions_over_grpc_on_cassandra() {
    let admin = cassandra().await;
    let ks = format!("supp_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    let replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    sluice_cql::migrate(&admin, &ks, replication)
        .await
        .expect("migrate fresh keyspace");
    let ledger = CqlLedger::prepare(cassandra().await, &ks, 30, 7)
        .await
        .expect("prepare statements");
    check_over_grpc(ledger.into()).await;
    drop_keyspace(&admin, &ks).await;
}
