//! Consumer-group members: how a service reads topics as one of possibly
//! several readers of a group, pausing partitions and committing progress.

use std::time::Duration;

use crate::{Fence, Headers, LogError};

/// Most records one [`GroupConsumer::poll`] returns.
pub const POLL_RECORDS: usize = 500;

/// A record read by a group member, with the topic it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// The headers the record was appended with, in their order.
    pub headers: Headers,
}

/// A change of the partitions a group member owns. Partitions are
/// `(topic, partition)` pairs, sorted.
///
/// - `Assigned`: the member now reads these partitions (from the group's
///   committed offsets). A Kafka member gets one after joining and after
///   every rebalance; an embedded member gets every partition of its topics
///   once, at [`crate::MessageLog::subscribe`].
/// - `Revoked`: the member no longer owns these partitions; records of them
///   it has read but not committed will be read again by their next owner,
///   and commits for them may fail. On Kafka it comes before the partitions
///   move (eager rebalancing revokes everything, then assigns anew); on the
///   embedded log when the member leaves ([`GroupConsumer::leave`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

impl Rebalance {
    /// The partitions the event is about.
    pub fn partitions(&self) -> &[(String, i32)] {
        match self {
            Self::Assigned(p) | Self::Revoked(p) => p,
        }
    }
}

/// Most rebalance events a member keeps for a caller that does not take
/// them; older ones are dropped (with a warning) beyond this.
pub(crate) const MAX_PENDING_REBALANCES: usize = 256;

/// Appends `event` to a member's pending events, dropping the oldest beyond
/// [`MAX_PENDING_REBALANCES`].
pub(crate) fn push_rebalance(
    pending: &mut std::collections::VecDeque<Rebalance>,
    event: Rebalance,
) {
    if pending.len() >= MAX_PENDING_REBALANCES {
        tracing::warn!(
            "dropping an old rebalance event nobody took (call GroupConsumer::rebalances)"
        );
        pending.pop_front();
    }
    pending.push_back(event);
}

/// How far a member has got in one partition: the next offset to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Commit {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

impl Commit {
    /// The commits that mark every record of `records` done: per partition,
    /// the offset after the highest one read.
    pub fn after(records: &[Delivery]) -> Vec<Commit> {
        let mut next: std::collections::BTreeMap<(&str, i32), i64> = Default::default();
        for r in records {
            let slot = next.entry((r.topic.as_str(), r.partition)).or_default();
            *slot = (*slot).max(r.offset + 1);
        }
        next.into_iter()
            .map(|((topic, partition), next_offset)| Commit {
                topic: topic.to_owned(),
                partition,
                next_offset,
            })
            .collect()
    }
}

/// How far a group is behind in one partition a member owns
/// ([`GroupConsumer::lag`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Records the group has not committed: the partition's end (the next
    /// offset to be appended) minus the group's committed offset or, where
    /// the group never committed, minus the member's read position (the
    /// earliest retained record before its first read). Never negative.
    pub records: i64,
}

impl PartitionLag {
    /// The lag of `topic`/`partition` whose next offset to append is `end`,
    /// for a group that has finished every record below `done`.
    pub(crate) fn new(topic: &str, partition: i32, end: i64, done: i64) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
            records: (end - done).max(0),
        }
    }
}

impl From<PartitionLag> for (String, i32, i64) {
    /// `(topic, partition, records)`.
    fn from(lag: PartitionLag) -> Self {
        (lag.topic, lag.partition, lag.records)
    }
}

/// One member of a consumer group, subscribed to some topics.
///
/// - The member reads the partitions the group assigns it (on Kafka: the
///   group protocol splits partitions between members and moves them when
///   members come and go; on the embedded log: a group has one member, which
///   owns every partition).
/// - A partition starts at the group's committed offset, or at its earliest
///   retained record when the group never committed.
/// - [`GroupConsumer::poll`] is cancel-safe: dropping its future loses no
///   record (a record counts as read only once `poll` has returned it).
/// - A paused partition returns no records until it is resumed; records
///   already returned are not returned again.
/// - Changes of the member's partitions are [`Rebalance`] events, taken with
///   [`GroupConsumer::rebalances`]. They happen while the member polls (on
///   Kafka the group protocol runs inside `poll`), and a poll that saw one
///   returns at once, possibly with no records, so a caller that checks
///   `rebalances()` after every poll sees each event before the records
///   that follow it. Callers that do not care may ignore them.
pub trait GroupConsumer: Send + 'static {
    /// Up to `max` records (at least one when any is available) of the
    /// assigned, unpaused partitions, in offset order within each partition;
    /// waits up to `wait` when none is available.
    fn poll_at_most(
        &mut self,
        wait: Duration,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Delivery>, LogError>> + Send;

    /// [`GroupConsumer::poll_at_most`] [`POLL_RECORDS`] records.
    fn poll(
        &mut self,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, LogError>> + Send {
        self.poll_at_most(wait, POLL_RECORDS)
    }

    /// Stops returning records of `topic`/`partition` until resumed, or
    /// until it is revoked: a partition assigned (again) starts unpaused.
    fn pause(&mut self, topic: &str, partition: i32);

    /// Returns records of `topic`/`partition` again, from where it stopped.
    fn resume(&mut self, topic: &str, partition: i32);

    /// The rebalance events since the previous call, oldest first. Never
    /// waits: events arrive during [`GroupConsumer::poll_at_most`].
    fn rebalances(&mut self) -> Vec<Rebalance>;

    /// Leaves the group: the member's partitions are revoked (a
    /// [`Rebalance::Revoked`] event follows; on Kafka with the next poll) and
    /// go to the group's other members. Polls return no records afterwards.
    /// Dropping a member leaves too, without an event.
    fn leave(&mut self);

    /// The partitions this member must not start work on any more: closed
    /// the moment the group takes them away (on Kafka inside the rebalance
    /// callback, before the [`Rebalance::Revoked`] event is even polled),
    /// opened again when they are assigned. Shared and cheap to check, so a
    /// caller's other tasks can stop at once. Work begun through it
    /// ([`Fence::begin`]) is waited for before the partitions are given up,
    /// for up to the fence's drain time. The default never closes.
    fn fence(&self) -> Fence {
        Fence::default()
    }

    /// Durably commits the group's progress; returns once it is durable.
    fn commit(&mut self, commits: &[Commit]) -> impl Future<Output = Result<(), LogError>> + Send;

    /// The group's lag in each partition this member owns now, sorted by
    /// (topic, partition); empty while it owns none (not assigned yet, or
    /// left). The future borrows nothing from the member, so a caller can
    /// spawn it and keep polling: the lag is measured off the read path (on
    /// Kafka it asks the brokers, on tokio's blocking pool).
    fn lag(&self) -> impl Future<Output = Result<Vec<PartitionLag>, LogError>> + Send + use<Self>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(topic: &str, partition: i32, offset: i64) -> Delivery {
        Delivery {
            topic: topic.into(),
            partition,
            offset,
            key: Vec::new(),
            payload: Vec::new(),
            headers: Vec::new(),
        }
    }

    #[test]
    fn commits_follow_the_highest_offset_per_partition() {
        let read = [at("a", 0, 4), at("a", 1, 9), at("a", 0, 7), at("b", 0, 0)];
        let next: Vec<(String, i32, i64)> = Commit::after(&read)
            .into_iter()
            .map(|c| (c.topic, c.partition, c.next_offset))
            .collect();
        assert_eq!(
            next,
            [("a".into(), 0, 8), ("a".into(), 1, 10), ("b".into(), 0, 1)]
        );
        assert!(Commit::after(&[]).is_empty());
    }
}
