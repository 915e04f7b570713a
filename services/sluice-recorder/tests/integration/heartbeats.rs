//! `IngestHeartbeat` over a real tonic server on 127.0.0.1:0, on the
//! embedded ledger and on Cassandra (a migrated keyspace of its own): live
//! ingest nodes are counted, a node whose TTL passed drops out, only admin
//! and node tokens may call it, and bad requests name the field.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1::IngestHeartbeatRequest;
use sluice_recorder::{AnyLedger, CqlLedger, EmbeddedLedger};
use sluice_testkit::query::{self, NODE_TOKEN, OPERATOR_TOKEN};

use crate::conformance::fresh;

fn beat(node: &str, ttl_ms: u64) -> IngestHeartbeatRequest {
    IngestHeartbeatRequest {
        node: node.into(),
        ttl_ms,
    }
}

async fn heartbeats_over_grpc(ledger: AnyLedger) {
    let server = query::serve(Arc::new(ledger)).await;
    let mut node = query::client(&server.url, Some(NODE_TOKEN))
        .await
        .expect("connect");
    let (a, b) = (fresh("ingest-a"), fresh("ingest-b"));
    let live = |name: String, ttl_ms: u64| {
        let mut node = node.clone();
        async move {
            node.ingest_heartbeat(beat(&name, ttl_ms))
                .await
                .expect("heartbeat")
                .into_inner()
                .live_nodes
        }
    };
    assert_eq!(live(a.clone(), 60_000).await, 1, "the caller alone");
    assert_eq!(live(a.clone(), 60_000).await, 1, "a node counts once");
    assert_eq!(live(b.clone(), 1_000).await, 2, "two nodes");
    // Cassandra's TTL is in whole seconds: b's row is gone within 2 s.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(live(a.clone(), 60_000).await, 1, "b's heartbeat lapsed");

    for (request, field) in [(beat("", 5_000), "node"), (beat(&a, 999), "ttl_ms")] {
        let err = node
            .ingest_heartbeat(request)
            .await
            .expect_err("bad request");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains(field), "{}", err.message());
    }
    let long = beat(&"n".repeat(257), 5_000);
    let err = node.ingest_heartbeat(long).await.expect_err("long node id");
    assert!(err.message().contains("node"), "{}", err.message());

    let mut ops = query::client(&server.url, Some(OPERATOR_TOKEN))
        .await
        .expect("connect");
    let err = ops
        .ingest_heartbeat(beat(&a, 5_000))
        .await
        .expect_err("operators do not heartbeat");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("admin or node"), "{}", err.message());
    let mut anonymous = query::client(&server.url, None).await.expect("connect");
    let err = anonymous
        .ingest_heartbeat(beat(&a, 5_000))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_ledger_counts_live_ingest_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = EmbeddedLedger::open(dir.path(), 30, 7).expect("open");
    heartbeats_over_grpc(ledger.into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_ledger_counts_live_ingest_nodes() {
    let (session, ks) = sluice_testkit::cql::migrated_keyspace("beats").await;
    let ledger = CqlLedger::prepare(session, &ks, 30, 7)
        .await
        .expect("prepare");
    heartbeats_over_grpc(ledger.into()).await;
    let admin = sluice_testkit::servers::cassandra().await;
    sluice_testkit::cql::drop_keyspace(&admin, &ks).await;
}
