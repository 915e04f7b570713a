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
    GroupConsumer, KafkaConfig, KafkaConsumer, KafkaLog, MessageLog, NewRecord, Position,
    Rebalance, probe,
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

/// A second member joins `group`; returns it with both members' events up
/// to their new assignments.
async fn second_joins(
    log: &KafkaLog,
    group: &str,
    topics: &[String],
    first: &mut KafkaConsumer,
) -> (KafkaConsumer, Vec<Rebalance>, Vec<Rebalance>) {
    let mut second = log.subscribe(group, topics).await.expect("second member");
    let (first_events, second_events) = tokio::join!(
        revoked_then_assigned(first),
        poll_until_rebalance(
            &mut second,
            |e| matches!(e, Rebalance::Assigned(p) if !p.is_empty())
        ),
    );
    (second, first_events, second_events)
}

/// Appends 40 records to `topic`; returns where they went.
async fn append_forty(log: &KafkaLog, topic: &str) -> Vec<Position> {
    let records: Vec<NewRecord> = (0..40)
        .map(|i| NewRecord {
            topic: topic.to_owned(),
            key: format!("k{i}").into_bytes(),
            payload: vec![1],
            headers: Vec::new(),
        })
        .collect();
    log.append_batch(records).await.expect("append")
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

    let (mut second, first_events, second_events) =
        second_joins(&log, &group, &topics, &mut first).await;
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
    let positions = append_forty(&log, &topic).await;
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

/// A partition the first member paused, then lost to a rebalance and got
/// back, is read again: the assignment starts unpaused. (librdkafka keeps
/// the pause across the revocation; the member, which forgot its paused
/// partitions at the revocation, would never resume it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_paused_then_assigned_again_is_read() {
    let log = kafka_log().await;
    let (topic, group) = (fresh("p"), fresh("g"));
    log.create_topic(&topic, PARTITIONS).await.expect("create");
    let topics = [topic.clone()];
    let mut first = log.subscribe(&group, &topics).await.expect("first member");
    poll_until_rebalance(&mut first, |e| matches!(e, Rebalance::Assigned(_))).await;
    for p in 0..PARTITIONS {
        first.pause(&topic, p);
    }
    let (second, first_events, _) = second_joins(&log, &group, &topics, &mut first).await;
    let mine = last_assigned(&first_events);
    assert!(!mine.is_empty(), "the first member got partitions back");
    let positions = append_forty(&log, &topic).await;
    let want = positions
        .iter()
        .filter(|p| mine.contains(&(topic.clone(), p.partition)))
        .count();
    let got = poll_exactly(&mut first, want).await;
    assert_eq!(
        got.len(),
        want,
        "every record of the partitions it got back"
    );
    drop(second);
}

/// How long the test keeps work in progress after the revocation began.
const HOLD: Duration = Duration::from_secs(4);

/// Work begun through a member's fence holds its partitions: the group's
/// next assignment of them waits until the work settles (here: a token
/// dropped `HOLD` after the revocation closed the fence). Without the wait
/// the second member is assigned within the same rebalance, well before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_waits_for_work_begun_on_the_partitions() {
    let log = kafka_log().await;
    let (topic, group) = (fresh("hold"), fresh("g"));
    log.create_topic(&topic, PARTITIONS).await.expect("create");
    let topics = [topic.clone()];

    let mut first = log.subscribe(&group, &topics).await.expect("first member");
    poll_until_rebalance(&mut first, |e| matches!(e, Rebalance::Assigned(_))).await;
    let fence = first.fence();
    fence.set_drain(Duration::from_secs(60));
    let work = fence.begin(&topic, 0);

    let watched = (fence.clone(), topic.clone());
    let releaser = std::thread::spawn(move || {
        let (fence, topic) = watched;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !fence.is_closed(&topic, 0) {
            assert!(
                std::time::Instant::now() < deadline,
                "the revocation never closed the fence"
            );
            #[allow(clippy::disallowed_methods, reason = "a plain thread of the test")]
            std::thread::sleep(Duration::from_millis(20));
        }
        #[allow(clippy::disallowed_methods, reason = "a plain thread of the test")]
        std::thread::sleep(HOLD);
        let released = std::time::Instant::now();
        drop(work);
        released
    });

    let mut second = log.subscribe(&group, &topics).await.expect("second member");
    let assigned = async {
        poll_until_rebalance(
            &mut second,
            |e| matches!(e, Rebalance::Assigned(p) if !p.is_empty()),
        )
        .await;
        std::time::Instant::now()
    };
    let (first_events, assigned_at) = tokio::join!(revoked_then_assigned(&mut first), assigned);
    let released_at = releaser.join().expect("the releasing thread");
    assert!(
        assigned_at >= released_at,
        "the second member was assigned {:?} before the work on the revoked partitions settled",
        released_at - assigned_at
    );
    assert!(
        first_events
            .iter()
            .any(|e| matches!(e, Rebalance::Revoked(p) if p.contains(&(topic.clone(), 0)))),
        "{first_events:?}"
    );
    assert_eq!(fence.busy(&[(topic.clone(), 0)]), 0);
}
