//! The message log Sluice's services need, independent of its back end.

use std::time::Duration;

use crate::{GroupConsumer, LogError};

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// A record to append: the partition is chosen from `key` (see [`partition_for`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub topic: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A record read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// How much one read may return. At least one record is returned when one is
/// available, even if it alone exceeds `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimit {
    /// Most records per read.
    pub max_records: usize,
    /// Soft cap on the summed payload and key bytes per read.
    pub max_bytes: usize,
}

impl Default for ReadLimit {
    fn default() -> Self {
        Self {
            max_records: 500,
            max_bytes: 50 * 1024 * 1024,
        }
    }
}

/// The largest record (key plus payload) either back end takes: a 25 MB
/// message plus its envelope. Kafka producers and the topics Sluice creates
/// use the same limit (`message.max.bytes`, `max.message.bytes`).
pub const MAX_RECORD_BYTES: usize = 32 * 1024 * 1024;

/// Refuses a record above [`MAX_RECORD_BYTES`] with [`LogError::TooLarge`].
pub fn check_record(topic: &str, key: &[u8], payload: &[u8]) -> Result<(), LogError> {
    let size = key.len() + payload.len();
    if size > MAX_RECORD_BYTES {
        return Err(LogError::TooLarge {
            topic: topic.to_owned(),
            size,
            limit: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}

/// The partition of a record with `key` in a topic of `partitions` partitions:
/// FNV-1a (64 bit) of the key, modulo the count. Stable across processes,
/// platforms and Rust versions, so a key always lands in the same partition.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % partitions.max(1) as u64) as i32
}

/// A partitioned, durable message log with consumer groups: the part of
/// Kafka that Sluice uses.
///
/// - Offsets in a partition start at 0, are dense and increase by one per
///   record, and are never reused (also after retention removed records).
/// - An append returns only when its records are durable. A batch may span
///   topics; it is atomic (all records or none) on the embedded back end
///   only: on Kafka a failed batch may have written some of its records.
/// - A group's committed offset is the next offset it will read. A commit is
///   durable on return. A group that never committed starts at the partition's
///   earliest retained record.
/// - Pausing a partition is the reader's business: it simply stops calling
///   [`MessageLog::read`] for it.
///
/// Methods return `Send` futures so that callers can spawn them; the trait is
/// used through generics (`impl MessageLog`), not `dyn`.
pub trait MessageLog: Send + Sync + 'static {
    /// A member of a consumer group ([`MessageLog::subscribe`]).
    type Consumer: GroupConsumer;

    /// Joins `group` as a member reading `topics` (which must exist): the
    /// group's partitions of those topics are shared among its members.
    fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> impl Future<Output = Result<Self::Consumer, LogError>> + Send;

    /// Creates `topic` with `partitions` partitions. Creating an existing topic
    /// with the same count is not an error.
    fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
    ) -> impl Future<Output = Result<(), LogError>> + Send;

    /// The number of partitions of `topic`.
    fn partitions(&self, topic: &str) -> impl Future<Output = Result<i32, LogError>> + Send;

    /// Appends one record to the partition its key hashes to; returns where it
    /// landed once it is durable.
    fn append(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> impl Future<Output = Result<Position, LogError>> + Send;

    /// Appends all `records` atomically and durably; positions in input order.
    fn append_batch(
        &self,
        records: Vec<NewRecord>,
    ) -> impl Future<Output = Result<Vec<Position>, LogError>> + Send;

    /// Records of one partition from offset `from` (or the earliest retained
    /// record, if `from` is below it) in offset order. When none is available
    /// waits up to `wait` for one to be appended; an empty result means none
    /// came.
    fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        limit: ReadLimit,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Record>, LogError>> + Send;

    /// Registers `group` as a reader of `topic`: from now on retention keeps
    /// every record the group has not committed. Call it before the first read.
    fn join(&self, group: &str, topic: &str) -> impl Future<Output = Result<(), LogError>> + Send;

    /// The group's committed offset (the next offset it reads), `None` if it
    /// never committed or joined.
    fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Option<i64>, LogError>> + Send;

    /// Durably records that `group` has finished every record below
    /// `next_offset`. Records below the lowest committed offset of all groups
    /// of the topic may then be removed.
    fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
}

/// Kafka's topic name rules: 1..=249 characters of `[A-Za-z0-9._-]`.
pub fn check_topic(name: &str) -> Result<(), LogError> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LogError::InvalidName {
            what: "topic",
            name: name.to_owned(),
            reason: "use 1 to 249 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
        })
    }
}

/// Group names: non-empty, at most 255 bytes.
pub fn check_group(name: &str) -> Result<(), LogError> {
    if name.is_empty() || name.len() > 255 {
        return Err(LogError::InvalidName {
            what: "group",
            name: name.to_owned(),
            reason: "use 1 to 255 bytes",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_stable_and_in_range() {
        // Pinned values: changing the hash would move keys between partitions
        // of existing data directories.
        assert_eq!(
            partition_for(b"", 8),
            (0xcbf2_9ce4_8422_2325_u64 % 8) as i32
        );
        assert_eq!(partition_for(b"msg-1", 1), 0);
        for i in 0..1000 {
            let p = partition_for(format!("m{i}").as_bytes(), 12);
            assert!((0..12).contains(&p));
        }
    }

    #[test]
    fn keys_spread_over_partitions() {
        let mut seen = [0_u32; 8];
        for i in 0..8000 {
            seen[partition_for(format!("01J{i:08}").as_bytes(), 8) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "uneven spread: {seen:?}");
    }
}
