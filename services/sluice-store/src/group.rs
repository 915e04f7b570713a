//! Consumer-group members: how a service reads topics as one of possibly
//! several readers of a group, pausing partitions and committing progress.

use std::time::Duration;

use crate::StoreError;

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
}

/// How far a member has got in one partition: the next offset to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Commit {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
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
pub trait GroupConsumer: Send + 'static {
    /// Up to `max` records (at least one when any is available) of the
    /// assigned, unpaused partitions, in offset order within each partition;
    /// waits up to `wait` when none is available.
    fn poll_at_most(
        &mut self,
        wait: Duration,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Delivery>, StoreError>> + Send;

    /// [`GroupConsumer::poll_at_most`] [`POLL_RECORDS`] records.
    fn poll(
        &mut self,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, StoreError>> + Send {
        self.poll_at_most(wait, POLL_RECORDS)
    }

    /// Stops returning records of `topic`/`partition` until resumed.
    fn pause(&mut self, topic: &str, partition: i32);

    /// Returns records of `topic`/`partition` again, from where it stopped.
    fn resume(&mut self, topic: &str, partition: i32);

    /// Durably commits the group's progress; returns once it is durable.
    fn commit(&mut self, commits: &[Commit])
    -> impl Future<Output = Result<(), StoreError>> + Send;
}
