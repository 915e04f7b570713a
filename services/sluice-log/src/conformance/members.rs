//! Checks of consumer-group members: reading, resuming, pausing, and the
//! rebalance events of joining and leaving.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::PATIENCE;
use crate::{Commit, Delivery, GroupConsumer, MessageLog, NewRecord, Rebalance};

/// How long a check waits for a rebalance (a Kafka group's join takes a
/// few seconds, more when another member must rejoin first).
pub const REBALANCE_PATIENCE: Duration = Duration::from_secs(45);

/// Polls `consumer` until `count` records came; fails after [`PATIENCE`].
pub async fn poll_exactly<C: GroupConsumer>(consumer: &mut C, count: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + PATIENCE;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records reached the group member",
            out.len()
        );
        let got = consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll");
        out.extend(got);
    }
    out
}

/// Appends `count` records `k0..` to `topic`; returns their keys.
pub(crate) async fn append_keys<L: MessageLog>(log: &L, topic: &str, count: usize) -> Vec<Vec<u8>> {
    let records: Vec<NewRecord> = (0..count)
        .map(|i| NewRecord {
            topic: topic.to_owned(),
            key: format!("k{i}").into_bytes(),
            payload: format!("v{i}").into_bytes(),
            headers: Vec::new(),
        })
        .collect();
    let keys = records.iter().map(|r| r.key.clone()).collect();
    log.append_batch(records).await.expect("append batch");
    keys
}

/// A lone member of a new group reads every record of two topics once, in
/// offset order within each partition, and nothing more.
pub async fn a_member_reads_every_record_once<L: MessageLog>(
    log: &L,
    fresh: &dyn Fn(&str) -> String,
) {
    let (a, b, group) = (fresh("member.a"), fresh("member.b"), fresh("member.g"));
    log.create_topic(&a, 3).await.expect("create a");
    log.create_topic(&b, 2).await.expect("create b");
    append_keys(log, &a, 30).await;
    append_keys(log, &b, 20).await;
    let mut member = log
        .subscribe(&group, &[a.clone(), b.clone()])
        .await
        .expect("subscribe");
    // A poll that sees the assignment returns at once, maybe empty.
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < deadline {
        got = member
            .poll_at_most(Duration::from_secs(1), 7)
            .await
            .expect("poll at most 7");
    }
    assert!(
        (1..=7).contains(&got.len()),
        "poll_at_most(7) returned {} records",
        got.len()
    );
    let rest = 50 - got.len();
    got.extend(poll_exactly(&mut member, rest).await);
    assert_eq!(got.len(), 50, "every record once");
    let mut seen = std::collections::HashSet::new();
    let mut last: std::collections::HashMap<(String, i32), i64> = Default::default();
    for r in &got {
        assert!(seen.insert((r.topic.clone(), r.key.clone())), "{r:?} twice");
        let prev = last.insert((r.topic.clone(), r.partition), r.offset);
        assert!(prev.is_none_or(|p| p < r.offset), "out of order at {r:?}");
    }
    let extra = member.poll(Duration::from_millis(300)).await.expect("poll");
    assert!(
        extra.is_empty(),
        "records beyond the 50 appended: {extra:?}"
    );
}

/// A member that committed part of what it read and left is followed by
/// one that starts at the commit: the uncommitted records come again.
pub async fn a_member_resumes_after_the_commit<L: MessageLog>(
    log: &L,
    fresh: &dyn Fn(&str) -> String,
) {
    let (topic, group) = (fresh("resume.t"), fresh("resume.g"));
    log.create_topic(&topic, 1).await.expect("create");
    append_keys(log, &topic, 10).await;
    let topics = [topic.clone()];
    let mut first = log.subscribe(&group, &topics).await.expect("subscribe");
    let got = poll_exactly(&mut first, 10).await;
    first
        .commit(&Commit::after(&got[..4]))
        .await
        .expect("commit");
    drop(first);
    let mut second = log.subscribe(&group, &topics).await.expect("resubscribe");
    let again = poll_exactly(&mut second, 6).await;
    let offsets: Vec<i64> = again.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (4..10).collect::<Vec<_>>(),
        "resumes at the commit"
    );
}

/// A paused partition yields nothing while others flow; resumed, it
/// continues where it stopped.
pub async fn paused_partitions_wait<L: MessageLog>(log: &L, fresh: &dyn Fn(&str) -> String) {
    let (held, open, group) = (fresh("pause.held"), fresh("pause.open"), fresh("pause.g"));
    log.create_topic(&held, 1).await.expect("create held");
    log.create_topic(&open, 1).await.expect("create open");
    let mut member = log
        .subscribe(&group, &[held.clone(), open.clone()])
        .await
        .expect("subscribe");
    // Reading first makes sure the member owns its partitions (a Kafka
    // assignment arrives with the first polls).
    let none = member.poll(Duration::from_millis(500)).await.expect("poll");
    assert!(none.is_empty(), "nothing appended yet: {none:?}");
    append_keys(log, &held, 1).await;
    let first = poll_exactly(&mut member, 1).await;
    assert_eq!(first[0].topic, held);
    member.pause(&held, 0);
    append_keys(log, &held, 3).await;
    append_keys(log, &open, 2).await;
    let flowing = poll_exactly(&mut member, 2).await;
    assert!(
        flowing.iter().all(|r| r.topic == open),
        "a paused partition returned records: {flowing:?}"
    );
    let more = member.poll(Duration::from_millis(500)).await.expect("poll");
    assert!(more.is_empty(), "paused records leaked: {more:?}");
    member.resume(&held, 0);
    let rest = poll_exactly(&mut member, 3).await;
    let offsets: Vec<i64> = rest.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        vec![1, 2, 3],
        "continues after the last record read"
    );
}

/// Polls `member` (taking any records, which the caller's topics should not
/// have) until its rebalance events include one `done` accepts; returns every
/// event seen. Fails after [`REBALANCE_PATIENCE`].
pub async fn poll_until_rebalance<C: GroupConsumer>(
    member: &mut C,
    done: impl Fn(&Rebalance) -> bool,
) -> Vec<Rebalance> {
    let deadline = Instant::now() + REBALANCE_PATIENCE;
    let mut seen = Vec::new();
    loop {
        seen.extend(member.rebalances());
        if seen.iter().any(&done) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "no such rebalance event within {REBALANCE_PATIENCE:?}; saw {seen:?}"
        );
        member
            .poll(Duration::from_millis(200))
            .await
            .expect("poll while waiting for a rebalance");
    }
}

/// Every (topic, partition) of `topics`.
async fn all_partitions<L: MessageLog>(log: &L, topics: &[String]) -> BTreeSet<(String, i32)> {
    let mut out = BTreeSet::new();
    for topic in topics {
        for p in 0..log.partitions(topic).await.expect("partitions") {
            out.insert((topic.clone(), p));
        }
    }
    out
}

/// The lone member of a new group gets one [`Rebalance::Assigned`] naming
/// exactly the partitions of its topics, and no revocation.
pub async fn a_new_member_is_assigned_its_partitions<L: MessageLog>(
    log: &L,
    fresh: &dyn Fn(&str) -> String,
) {
    let (a, b, group) = (fresh("assign.a"), fresh("assign.b"), fresh("assign.g"));
    log.create_topic(&a, 3).await.expect("create a");
    log.create_topic(&b, 2).await.expect("create b");
    let topics = [a.clone(), b.clone()];
    let mut member = log.subscribe(&group, &topics).await.expect("subscribe");
    let seen = poll_until_rebalance(&mut member, |e| matches!(e, Rebalance::Assigned(_))).await;
    let want = all_partitions(log, &topics).await;
    let assigned: Vec<&Rebalance> = seen
        .iter()
        .filter(|e| matches!(e, Rebalance::Assigned(_)))
        .collect();
    assert_eq!(assigned.len(), 1, "one assignment: {seen:?}");
    let got: BTreeSet<(String, i32)> = assigned[0].partitions().iter().cloned().collect();
    assert_eq!(
        got, want,
        "the assignment names exactly the subscribed partitions"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Rebalance::Revoked(p) if !p.is_empty())),
        "nothing to revoke from a new member: {seen:?}"
    );
}

/// A member that leaves gets a [`Rebalance::Revoked`] naming the partitions
/// it was assigned, and reads nothing afterwards.
pub async fn a_leaving_member_has_its_partitions_revoked<L: MessageLog>(
    log: &L,
    fresh: &dyn Fn(&str) -> String,
) {
    let (topic, group) = (fresh("revoke.t"), fresh("revoke.g"));
    log.create_topic(&topic, 2).await.expect("create");
    let topics = [topic.clone()];
    let mut member = log.subscribe(&group, &topics).await.expect("subscribe");
    poll_until_rebalance(&mut member, |e| matches!(e, Rebalance::Assigned(_))).await;
    member.leave();
    let want: Vec<(String, i32)> = all_partitions(log, &topics).await.into_iter().collect();
    let seen = poll_until_rebalance(&mut member, |e| matches!(e, Rebalance::Revoked(_))).await;
    let revoked = seen.iter().find(|e| matches!(e, Rebalance::Revoked(_)));
    assert_eq!(
        revoked.map(Rebalance::partitions),
        Some(&want[..]),
        "{seen:?}"
    );
    append_keys(log, &topic, 4).await;
    let after = member.poll(Duration::from_millis(500)).await.expect("poll");
    assert!(after.is_empty(), "a member that left read {after:?}");
}
