//! Checks of a member's consumer lag ([`GroupConsumer::lag`]).

use super::members::{append_keys, poll_exactly, poll_until_rebalance};
use crate::{Commit, GroupConsumer, MessageLog, PartitionLag, Rebalance};

/// Records appended before the member reads.
const APPENDED: usize = 20;
/// Records of partition 0 the group commits.
const COMMITTED_IN_0: i64 = 3;

/// After a commit, a member's lag names each partition it owns with the
/// records appended and not committed there (partition 0: all but the
/// first [`COMMITTED_IN_0`]; partition 1, committed to its end: none);
/// appends raise it; a member that left owns nothing and reports nothing.
pub async fn lag_counts_the_uncommitted_records<L: MessageLog>(
    log: &L,
    fresh: &dyn Fn(&str) -> String,
) {
    let (topic, group) = (fresh("lag.t"), fresh("lag.g"));
    log.create_topic(&topic, 2).await.expect("create");
    append_keys(log, &topic, APPENDED).await;
    let topics = [topic.clone()];
    let mut member = log.subscribe(&group, &topics).await.expect("subscribe");
    let read = poll_exactly(&mut member, APPENDED).await;
    let in_0 = read.iter().filter(|d| d.partition == 0).count() as i64;
    assert!(in_0 > COMMITTED_IN_0, "keys k0.. put {in_0} in partition 0");
    let mut commits = Commit::after(&read);
    for c in commits.iter_mut().filter(|c| c.partition == 0) {
        c.next_offset = COMMITTED_IN_0;
    }
    member.commit(&commits).await.expect("commit");
    let lag = |partition, records| PartitionLag {
        topic: topic.clone(),
        partition,
        records,
    };
    let want = vec![lag(0, in_0 - COMMITTED_IN_0), lag(1, 0)];
    assert_eq!(member.lag().await.expect("lag"), want, "after the commit");

    append_keys(log, &topic, 5).await;
    let total: i64 = member
        .lag()
        .await
        .expect("lag")
        .iter()
        .map(|l| l.records)
        .sum();
    assert_eq!(total, in_0 - COMMITTED_IN_0 + 5, "five more appended");

    member.leave();
    poll_until_rebalance(&mut member, |e| matches!(e, Rebalance::Revoked(_))).await;
    let after = member.lag().await.expect("lag after leaving");
    assert!(after.is_empty(), "a member that left reports {after:?}");
}
