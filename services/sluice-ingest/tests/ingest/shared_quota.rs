//! Tenant quotas across ingest nodes: two real ingest nodes heartbeat to one
//! Query service (tonic, 127.0.0.1:0) over an embedded ledger, learn that
//! two nodes are alive and each enforce half of globex's `rate_quota = 20`.
//! 60 recipients sent as fast as possible across both get about 20 accepted
//! (20 plus what the limiters refill while the run lasts), not 40.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_proto::v1::Recipient;
use sluice_recorder::EmbeddedLedger;
use tonic::Code;

use crate::common::{self, GLOBEX_KEY, Options};
use crate::grpc::{authed, connect, template_request};

const QUOTA: u32 = 20;

fn globex(recipients: usize, tag: &str) -> sluice_proto::v1::SendRequest {
    let to = (0..recipients)
        .map(|i| Recipient {
            address: format!("{tag}-{i}@example.org"),
            substitutions: [("first".to_owned(), "X".to_owned())].into(),
            ..Default::default()
        })
        .collect();
    let mut request = template_request(to);
    request.from = "hello@globex.example".into();
    request
}

/// Waits until `node` enforces half the quota: 11 recipients (more than a
/// share of 10 can ever hold) are refused naming 2 live nodes. A refusal of
/// more than the burst takes nothing from the limiter.
async fn wait_for_two_nodes(node: &common::Node) {
    let mut client = connect(node).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = client.send(authed(globex(11, "probe"), GLOBEX_KEY)).await;
        match answer {
            Err(status) if status.message().contains("10/s of 2 live ingest nodes") => return,
            Ok(_) => {}
            Err(status) if status.code() == Code::ResourceExhausted => {}
            Err(status) => panic!("probe failed: {status}"),
        }
        assert!(
            Instant::now() < deadline,
            "the node did not learn of the second ingest node within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_tenant_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = EmbeddedLedger::open(dir.path(), 30, 7).expect("open the embedded ledger");
    let query = sluice_testkit::query::serve(Arc::new(ledger.into())).await;
    let shared = || Options {
        idempotency_query: Some(query.url.clone()),
        globex_quota: QUOTA,
        ..Options::default()
    };
    let (a, b) = (common::start(shared()).await, common::start(shared()).await);
    wait_for_two_nodes(&a).await;
    wait_for_two_nodes(&b).await;

    // 60 one-recipient submissions at once, 30 on each node.
    let (client_a, client_b) = (connect(&a).await, connect(&b).await);
    let started = Instant::now();
    let sends: Vec<_> = (0..60)
        .map(|i| {
            let mut client = if i % 2 == 0 {
                client_a.clone()
            } else {
                client_b.clone()
            };
            tokio::spawn(async move {
                client
                    .send(authed(globex(1, &format!("burst{i}")), GLOBEX_KEY))
                    .await
            })
        })
        .collect();
    let mut accepted = 0u32;
    for send in futures::future::join_all(sends).await {
        match send.expect("send task") {
            Ok(_) => accepted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
                assert!(status.message().contains("globex"), "{status}");
            }
        }
    }
    let elapsed = started.elapsed();
    // Each node's limiter holds one second of its share (10) and refills
    // 10 per second: across both, 20 plus 20 per second of the run.
    let refill = (f64::from(QUOTA) * elapsed.as_secs_f64()).ceil() as u32;
    let bound = QUOTA + refill;
    eprintln!("accepted {accepted} of 60 in {elapsed:?} (bound {bound})");
    assert!(
        accepted <= bound,
        "accepted {accepted} of 60 in {elapsed:?}; at most {bound} expected"
    );
    assert!(
        accepted >= QUOTA,
        "each node's full share is accepted: {accepted}"
    );
    if elapsed < Duration::from_secs(1) {
        assert!(
            accepted < 2 * QUOTA,
            "not a whole quota per node: {accepted}"
        );
    }
    a.stop().await;
    b.stop().await;
}
