//! Which offset of a partition may be committed.
//!
//! A record's offset may be committed only when it and every record before it
//! in the partition has a durable fate (its event acknowledged by Kafka, or the
//! record re-published to a delay tier). Records finish out of order — a fast
//! site's message completes before a slow site's one that came earlier — so the
//! tracker keeps the set of records still in flight and commits up to the
//! lowest of them.

use sluice_log::Commit;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// Records taken ahead of the reading position (a woken site's parked
    /// mail, [`crate::wake`]): `false` while in flight, `true` once settled.
    /// Each is forgotten when the reading position reaches it.
    early: BTreeMap<i64, bool>,
    /// The entries of `early` still in flight.
    early_live: usize,
}

/// What the reading position found at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// An ordinary record: its work begins now.
    Fresh,
    /// Taken early and still in flight: it counts as in flight here too and
    /// its early handling finishes it; nothing else is done with it.
    InFlight,
    /// Taken early and already settled: skip it.
    Settled,
}

impl PartitionOffsets {
    /// A record was read and its work begins (unless it was taken early).
    pub fn start(&mut self, offset: i64) -> Reached {
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
        match self.early.get(&offset) {
            Some(true) => {
                self.early.remove(&offset);
                Reached::Settled
            }
            Some(false) => {
                self.pending.insert(offset);
                Reached::InFlight
            }
            None => {
                self.pending.insert(offset);
                Reached::Fresh
            }
        }
    }

    /// Takes a record ahead of the reading position; `false` when the
    /// position already reached it (the reader handles it) or it was taken.
    pub fn take_early(&mut self, offset: i64) -> bool {
        let ahead = self.next.is_some_and(|n| offset >= n);
        if !ahead || self.early.contains_key(&offset) {
            return false;
        }
        self.early.insert(offset, false);
        self.early_live += 1;
        true
    }

    /// The record's fate is durable.
    pub fn finish(&mut self, offset: i64) {
        self.pending.remove(&offset);
        if let Some(settled) = self.early.get_mut(&offset) {
            if !*settled {
                self.early_live -= 1;
            }
            if self.next.is_some_and(|n| offset < n) {
                self.early.remove(&offset);
            } else {
                *settled = true;
            }
        }
    }

    /// The record is dropped without a fate (its partition was revoked): it
    /// no longer counts as in flight, and no commit passes it.
    pub fn abandon(&mut self, offset: i64) {
        if self.early.get(&offset) == Some(&false) {
            self.early.remove(&offset);
            self.early_live -= 1;
        }
        if self.pending.remove(&offset) {
            self.abandoned = Some(self.abandoned.map_or(offset, |a| a.min(offset)));
        }
    }

    /// Records taken early and still in flight.
    pub fn early_in_flight(&self) -> usize {
        self.early_live
    }

    /// Whether `offset` was taken early and has no fate yet.
    pub fn is_early(&self, offset: i64) -> bool {
        self.early.get(&offset) == Some(&false)
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
    pub fn start(&mut self, topic: &str, partition: i32, offset: i64) -> Reached {
        self.partitions
            .entry((topic.to_owned(), partition))
            .or_default()
            .start(offset)
    }

    /// [`PartitionOffsets::take_early`]; `false` for a partition never read.
    pub fn take_early(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        self.partitions
            .get_mut(&(topic.to_owned(), partition))
            .is_some_and(|p| p.take_early(offset))
    }

    /// One past the highest offset read from the partition, if any was.
    pub fn reading_position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partitions.get(&(topic.to_owned(), partition))?.next
    }

    /// Records taken early, in every partition, still in flight.
    pub fn early_in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(PartitionOffsets::early_in_flight)
            .sum()
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

    /// [`PartitionOffsets::is_early`]; `false` for a partition not
    /// consumed here (revoked since the record was taken).
    pub fn is_early(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.partitions
            .get(&(topic.to_owned(), partition))
            .is_some_and(|p| p.is_early(offset))
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

    #[test]
    fn a_record_settled_early_is_skipped_when_reached() {
        let mut p = PartitionOffsets::default();
        p.start(0);
        assert!(p.take_early(5));
        assert!(!p.take_early(5), "taken once");
        assert_eq!(p.early_in_flight(), 1);
        p.finish(5);
        assert_eq!(p.early_in_flight(), 0);
        p.finish(0);
        for o in 1..5 {
            assert_eq!(p.start(o), Reached::Fresh);
            p.finish(o);
        }
        assert_eq!(p.start(5), Reached::Settled);
        assert_eq!(p.in_flight(), 0);
        assert_eq!(p.take_commit(), Some(6));
        assert!(p.early.is_empty(), "forgotten once reached");
    }

    #[test]
    fn a_record_reached_while_taken_early_holds_the_commit_until_settled() {
        let mut p = PartitionOffsets::default();
        p.start(0);
        assert!(p.take_early(1));
        p.finish(0);
        assert_eq!(p.start(1), Reached::InFlight);
        assert_eq!(p.take_commit(), Some(1), "1 is still in flight");
        p.finish(1);
        assert_eq!(p.take_commit(), Some(2));
        assert_eq!(p.early_in_flight(), 0);
        assert!(p.early.is_empty());
    }

    #[test]
    fn only_records_ahead_of_the_reading_position_are_taken_early() {
        let mut p = PartitionOffsets::default();
        assert!(!p.take_early(3), "a partition never read");
        p.start(3);
        assert!(!p.take_early(3), "already read");
        assert!(!p.take_early(2), "below the position");
        assert!(p.take_early(4));
        p.abandon(4);
        assert_eq!(p.early_in_flight(), 0, "a revoked early record is dropped");
        assert_eq!(p.start(4), Reached::Fresh, "and read again like any other");
    }

    proptest! {
        /// Whatever records are taken early and whenever they settle, a
        /// commit never passes a record without a fate, and every record is
        /// handled exactly once: either early or when reached.
        #[test]
        fn early_records_are_handled_once_and_never_committed_unsettled(
            early in proptest::collection::btree_set(1_i64..40, 0..20),
            steps in proptest::collection::vec(any::<bool>(), 0..200),
        ) {
            let mut p = PartitionOffsets::default();
            p.start(0);
            for &o in &early {
                prop_assert!(p.take_early(o));
            }
            let mut done = std::collections::HashSet::new();
            let mut handled = std::collections::HashMap::<i64, u32>::new();
            let (mut next, mut live): (i64, Vec<i64>) = (1, vec![0]);
            let mut early_live: Vec<i64> = early.iter().copied().collect();
            *handled.entry(0).or_default() += 1;
            for &o in &early {
                *handled.entry(o).or_default() += 1;
            }
            for read in steps {
                if read && next < 40 {
                    if p.start(next) == Reached::Fresh {
                        *handled.entry(next).or_default() += 1;
                        live.push(next);
                    }
                    next += 1;
                } else if let Some(o) = early_live.pop().or_else(|| live.pop()) {
                    p.finish(o);
                    done.insert(o);
                }
                if let Some(c) = p.take_commit() {
                    prop_assert!((0..c).all(|o| done.contains(&o)), "commit {} passes an unsettled record", c);
                }
            }
            prop_assert!(handled.values().all(|n| *n == 1), "{:?}", handled);
        }

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
