//! Idempotency keys shared by ingest nodes: two real ingest nodes keep their
//! keys in one Query service (tonic, 127.0.0.1:0) over an embedded ledger. A
//! submission retried on the other node is answered with the first node's
//! message ids and publishes nothing again.

use std::sync::Arc;

use sluice_proto::v1::Recipient;
use sluice_recorder::EmbeddedLedger;

use crate::common::{self, ACME_KEY, Options};
use crate::grpc::{authed, connect, marker, template_request};

fn to(address: &str) -> Recipient {
    Recipient {
        address: address.into(),
        substitutions: [("first".to_owned(), "X".to_owned())].into(),
        ..Default::default()
    }
}

fn keyed(key: &str) -> sluice_proto::v1::SendRequest {
    let mut request = template_request(vec![to("ann@example.org"), to("bob@example.org")]);
    request.idempotency_key = key.into();
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_node_replays_the_first_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = EmbeddedLedger::open(dir.path(), 30, 7).expect("open the embedded ledger");
    let query = sluice_testkit::query::serve(Arc::new(ledger.into())).await;
    let shared = || Options {
        idempotency_query: Some(query.url.clone()),
        ..Options::default()
    };
    let (a, b) = (common::start(shared()).await, common::start(shared()).await);
    let key = format!("order-{}", uuid::Uuid::new_v4().simple());

    let first = connect(&a)
        .await
        .send(authed(keyed(&key), ACME_KEY))
        .await
        .expect("first send on node a")
        .into_inner();
    assert!(!first.replayed);
    let mut client_b = connect(&b).await;
    let retry = client_b
        .send(authed(keyed(&key), ACME_KEY))
        .await
        .expect("retry on node b")
        .into_inner();
    assert!(retry.replayed, "node b recognised node a's key: {retry:?}");
    let ids = |r: &sluice_proto::v1::SendResponse| -> Vec<String> {
        r.recipients.iter().map(|x| x.message_id.clone()).collect()
    };
    assert_eq!(ids(&retry), ids(&first), "the same message ids");

    // Node b published nothing for the retry: its first record is the marker.
    client_b
        .send(authed(marker(), ACME_KEY))
        .await
        .expect("marker");
    let on_b = b.envelopes("shared", 1).await;
    assert_eq!(on_b[0].recipient, "marker@example.org");
    let on_a = a.envelopes("shared", 2).await;
    let sent: Vec<String> = on_a.iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(sent, ids(&first));
    a.stop().await;
    b.stop().await;
}
