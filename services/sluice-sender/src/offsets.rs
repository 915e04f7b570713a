//! Which offset of a partition may be committed.
//!
//! A record's offset may be committed only when it and every record before it
//! in the partition has a durable fate (its event acknowledged by Kafka, or the
//! record re-published to a delay tier). Records finish out of order — a fast
//! site's message completes before a slow site's one that came earlier — so the
//! tracker keeps the set of records still in flight and commits up to the
//! lowest of them.

use sluice_log::Commit;
use std::collections::{BTreeSet, HashMap};

/// In-flight records of one partition.
#[derive(Debug, Default, Clone)]
pub struct PartitionOffsets {
    pending: BTreeSet<i64>,
    /// One past the highest offset ever started.
    next: Option<i64>,
    /// The last offset handed out for commit (Kafka's "next offset to read").
    committed: Option<i64>,
    /// The lowest record dropped without a fate (its partition was revoked):
    /// commits stay below it.
    abandoned: Option<i64>,
}

impl PartitionOffsets {
    /// A record was read and its work begins.
    pub fn start(&mut self, offset: i64) {
        self.pending.insert(offset);
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// The record's fate is durable.
    pub fn finish(&mut self, offset: i64) {
        self.pending.remove(&offset);
    }

    /// The record is dropped without a fate (its partition was revoked): it
    /// no longer counts as in flight, and no commit passes it.
    pub fn abandon(&mut self, offset: i64) {
        if self.pending.remove(&offset) {
            self.abandoned = Some(self.abandoned.map_or(offset, |a| a.min(offset)));
        }
    }

    /// Records still without a durable fate.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The offset to commit (the next one to read after a restart), if it moved
    /// since the last call. Everything below it has a durable fate.
    pub fn take_commit(&mut self) -> Option<i64> {
        let next = self.next?;
        let mut safe = self.pending.first().copied().unwrap_or(next);
        if let Some(abandoned) = self.abandoned {
            safe = safe.min(abandoned);
        }
        if self.committed.is_some_and(|c| c >= safe) {
            return None;
        }
        self.committed = Some(safe);
        Some(safe)
    }
}

/// In-flight records of every partition this node consumes, keyed by
/// (topic, partition).
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<(String, i32), PartitionOffsets>,
}

impl OffsetTracker {
    pub fn start(&mut self, topic: &str, partition: i32, offset: i64) {
        self.partitions
            .entry((topic.to_owned(), partition))
            .or_default()
            .start(offset);
    }

    pub fn finish(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_owned(), partition)) {
            p.finish(offset);
        }
    }

    pub fn abandon(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_owned(), partition)) {
            p.abandon(offset);
        }
    }

    /// Records of one partition still without a durable fate.
    pub fn in_flight_of(&self, topic: &str, partition: i32) -> usize {
        self.partitions
            .get(&(topic.to_owned(), partition))
            .map_or(0, PartitionOffsets::in_flight)
    }

    /// Records of all partitions still without a durable fate.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(PartitionOffsets::in_flight)
            .sum()
    }

    /// Offsets that moved since the last call, as the log's commits.
    pub fn take_commits(&mut self) -> Vec<Commit> {
        let mut out = Vec::new();
        for ((topic, partition), p) in &mut self.partitions {
            if let Some(next_offset) = p.take_commit() {
                out.push(Commit {
                    topic: topic.clone(),
                    partition: *partition,
                    next_offset,
                });
            }
        }
        out
    }

    /// Forgets a partition this node no longer owns (after a rebalance).
    pub fn revoke(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_owned(), partition));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_only_below_the_lowest_unfinished_record() {
        let mut p = PartitionOffsets::default();
        for o in 10..15 {
            p.start(o);
        }
        p.finish(12);
        p.finish(13);
        assert_eq!(p.take_commit(), Some(10), "10 is still in flight");
        p.finish(10);
        assert_eq!(p.take_commit(), Some(11));
        p.finish(11);
        assert_eq!(p.take_commit(), Some(14));
        p.finish(14);
        assert_eq!(p.take_commit(), Some(15), "all done: next to read is 15");
        assert_eq!(p.take_commit(), None, "nothing moved");
    }

    #[test]
    fn commits_stay_below_an_abandoned_record() {
        let mut p = PartitionOffsets::default();
        for o in 0..5 {
            p.start(o);
        }
        p.finish(0);
        p.abandon(2);
        p.abandon(3);
        p.finish(1);
        p.finish(4);
        assert_eq!(p.in_flight(), 0);
        assert_eq!(
            p.take_commit(),
            Some(2),
            "2 has no fate: its next owner reads it"
        );
    }

    #[test]
    fn nothing_to_commit_before_any_record() {
        assert_eq!(PartitionOffsets::default().take_commit(), None);
    }

    proptest! {
        /// Whatever order records finish in, a committed offset never passes
        /// an unfinished record, never goes backwards, and reaches the end
        /// once all are done.
        #[test]
        fn never_commits_past_an_unfinished_record(
            start in 0_i64..1000,
            order in Just((0..64_i64).collect::<Vec<_>>()).prop_shuffle(),
        ) {
            let mut p = PartitionOffsets::default();
            for i in 0..64 {
                p.start(start + i);
            }
            let mut done = std::collections::HashSet::new();
            let mut last = None;
            for i in order {
                p.finish(start + i);
                done.insert(start + i);
                if let Some(c) = p.take_commit() {
                    prop_assert!((start..c).all(|o| done.contains(&o)), "commit {} passes an unfinished record", c);
                    prop_assert!(last.is_none_or(|l| c > l));
                    last = Some(c);
                }
            }
            prop_assert_eq!(last, Some(start + 64));
        }
    }
}
