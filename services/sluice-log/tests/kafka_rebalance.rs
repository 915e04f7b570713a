//! Two members of one Kafka consumer group, on a real broker: the second
//! member's join revokes the first member's partitions and assigns them
//! anew, split between the two, and each member then reads only its own
//! partitions. The events are the ones `GroupConsumer::rebalances` reports.
//!
//! Needs a broker: `deploy/servers/kafka.sh start`. Without one the test
//! fails with the reachability error, which says how to start it.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_log::conformance::{poll_exactly, poll_until_rebalance};
use sluice_log::{
    GroupConsumer, KafkaConfig, KafkaConsumer, KafkaLog, MessageLog, NewRecord, Rebalance, probe,
};

const PARTITIONS: i32 = 4;

async fn kafka_log() -> KafkaLog {
    let config = KafkaConfig::from_env("sluice-log-rebalance");
    if let Err(err) = probe(&config, Duration::from_secs(10)).await {
        panic!("this test needs a running Kafka broker. {err}");
    }
    KafkaLog::lazy(config).expect("Kafka clients")
}

fn fresh(label: &str) -> String {
    format!(
        "sluice.test.rebalance.{label}.{}",
        uuid::Uuid::new_v4().simple()
    )
}

type Partitions = BTreeSet<(String, i32)>;

fn set(event: &Rebalance) -> Partitions {
    event.partitions().iter().cloned().collect()
}

/// The partitions of the last assignment in `events`.
fn last_assigned(events: &[Rebalance]) -> Partitions {
    events
        .iter()
        .rev()
        .find(|e| matches!(e, Rebalance::Assigned(_)))
        .map(set)
        .unwrap_or_default()
}

/// The first member's side of the rebalance: a revocation of everything it
/// had, then a new assignment. Returns the events in order.
async fn revoked_then_assigned(member: &mut KafkaConsumer) -> Vec<Rebalance> {
    let mut seen = poll_until_rebalance(member, |e| matches!(e, Rebalance::Revoked(_))).await;
    let revoke_at = seen
        .iter()
        .position(|e| matches!(e, Rebalance::Revoked(_)))
        .unwrap_or_default();
    if !seen[revoke_at..]
        .iter()
        .any(|e| matches!(e, Rebalance::Assigned(_)))
    {
        seen.extend(poll_until_rebalance(member, |e| matches!(e, Rebalance::Assigned(_))).await);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_splits_the_partitions() {
    let log = kafka_log().await;
    let (topic, group) = (fresh("t"), fresh("g"));
    log.create_topic(&topic, PARTITIONS).await.expect("create");
    let topics = [topic.clone()];
    let all: Partitions = (0..PARTITIONS).map(|p| (topic.clone(), p)).collect();

    let mut first = log.subscribe(&group, &topics).await.expect("first member");
    let joined = poll_until_rebalance(&mut first, |e| matches!(e, Rebalance::Assigned(_))).await;
    assert_eq!(
        last_assigned(&joined),
        all,
        "alone, the first member owns all"
    );

    let mut second = log.subscribe(&group, &topics).await.expect("second member");
    let (first_events, second_events) = tokio::join!(
        revoked_then_assigned(&mut first),
        poll_until_rebalance(
            &mut second,
            |e| matches!(e, Rebalance::Assigned(p) if !p.is_empty())
        ),
    );
    let revoked = first_events
        .iter()
        .find(|e| matches!(e, Rebalance::Revoked(_)))
        .map(set);
    assert_eq!(
        revoked,
        Some(all.clone()),
        "eager rebalancing revokes all: {first_events:?}"
    );
    let (mine, theirs) = (last_assigned(&first_events), last_assigned(&second_events));
    assert!(
        !mine.is_empty() && !theirs.is_empty(),
        "{mine:?} / {theirs:?}"
    );
    assert!(mine.is_disjoint(&theirs), "{mine:?} overlaps {theirs:?}");
    assert_eq!(&mine | &theirs, all, "together they own every partition");

    // Each member now reads the records of its own partitions only.
    let records: Vec<NewRecord> = (0..40)
        .map(|i| NewRecord {
            topic: topic.clone(),
            key: format!("k{i}").into_bytes(),
            payload: vec![1],
        })
        .collect();
    let positions = log.append_batch(records).await.expect("append");
    let count = |owned: &Partitions| {
        positions
            .iter()
            .filter(|p| owned.contains(&(topic.clone(), p.partition)))
            .count()
    };
    let (want_first, want_second) = (count(&mine), count(&theirs));
    let (got_first, got_second) = tokio::join!(
        poll_exactly(&mut first, want_first),
        poll_exactly(&mut second, want_second),
    );
    for (got, owned) in [(&got_first, &mine), (&got_second, &theirs)] {
        for r in got {
            assert!(
                owned.contains(&(r.topic.clone(), r.partition)),
                "{r:?} not owned"
            );
        }
    }
    let extra = first.poll(Duration::from_millis(300)).await.expect("poll");
    assert!(extra.is_empty(), "the first member read more: {extra:?}");
}
