//! The message log Sluice's services need, independent of its back end.

use std::time::Duration;

use crate::{GroupConsumer, LogError};

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// A record's headers, as Kafka has them: `(name, value)` pairs in order.
/// Names may repeat; [`header`] finds the first. Limits: [`MAX_HEADERS`],
/// [`MAX_HEADER_NAME_BYTES`], [`MAX_HEADER_VALUE_BYTES`].
pub type Headers = Vec<(String, Vec<u8>)>;

/// Most headers one record carries.
pub const MAX_HEADERS: usize = 16;
/// Longest header name, in bytes of UTF-8 (names are at least one byte).
pub const MAX_HEADER_NAME_BYTES: usize = 255;
/// Longest header value, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;

/// A record to append: the partition is chosen from `key` (see [`partition_for`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub topic: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// Carried to readers unchanged; they do not choose the partition.
    pub headers: Headers,
}

impl NewRecord {
    /// A record without headers.
    pub fn new(
        topic: impl Into<String>,
        key: impl Into<Vec<u8>>,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            topic: topic.into(),
            key: key.into(),
            payload: payload.into(),
            headers: Headers::new(),
        }
    }

    /// The record with one more header, after those it has.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// [`check_record`] of this record.
    pub(crate) fn check(&self) -> Result<(), LogError> {
        check_record(&self.topic, &self.key, &self.payload, &self.headers)
    }

    /// The bytes it counts against [`MAX_RECORD_BYTES`].
    pub(crate) fn size(&self) -> usize {
        record_size(&self.key, &self.payload, &self.headers)
    }
}

/// A record read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// The headers it was appended with, in their order.
    pub headers: Headers,
}

/// The value of the first header named exactly `name`, if any.
pub fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value.as_slice())
}

/// How much one read may return. At least one record is returned when one is
/// available, even if it alone exceeds `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimit {
    /// Most records per read.
    pub max_records: usize,
    /// Soft cap on the summed key, payload and header bytes per read.
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

/// The largest record (key, payload and header names and values) either
/// back end takes: a 25 MB message plus its envelope. Kafka producers and
/// the topics Sluice creates use the same limit (`message.max.bytes`,
/// `max.message.bytes`).
pub const MAX_RECORD_BYTES: usize = 32 * 1024 * 1024;

/// The bytes a record counts against [`MAX_RECORD_BYTES`]: key, payload, and
/// every header's name and value.
pub(crate) fn record_size(key: &[u8], payload: &[u8], headers: &[(String, Vec<u8>)]) -> usize {
    let headers: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    key.len() + payload.len() + headers
}

/// Refuses headers beyond the limits ([`MAX_HEADERS`],
/// [`MAX_HEADER_NAME_BYTES`], [`MAX_HEADER_VALUE_BYTES`]) with
/// [`LogError::InvalidHeader`], and a record above [`MAX_RECORD_BYTES`] with
/// [`LogError::TooLarge`].
pub fn check_record(
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: &[(String, Vec<u8>)],
) -> Result<(), LogError> {
    check_headers(topic, headers)?;
    let size = record_size(key, payload, headers);
    if size > MAX_RECORD_BYTES {
        return Err(LogError::TooLarge {
            topic: topic.to_owned(),
            size,
            limit: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}

/// Refuses more than [`MAX_HEADERS`] headers, a name of 0 or more than
/// [`MAX_HEADER_NAME_BYTES`] bytes, or a value above
/// [`MAX_HEADER_VALUE_BYTES`], with [`LogError::InvalidHeader`] naming the
/// first header at fault and why.
pub fn check_headers(topic: &str, headers: &[(String, Vec<u8>)]) -> Result<(), LogError> {
    let count = headers.len();
    let fault = match headers.get(MAX_HEADERS) {
        Some((name, _)) => Some((
            name,
            format!("a record carries at most {MAX_HEADERS} headers, this one has {count}"),
        )),
        None => headers
            .iter()
            .find_map(|(name, value)| header_fault(name, value).map(|why| (name, why))),
    };
    match fault {
        None => Ok(()),
        Some((name, reason)) => Err(LogError::InvalidHeader {
            topic: topic.to_owned(),
            name: shortened(name),
            reason,
        }),
    }
}

/// What is wrong with one header, if anything.
fn header_fault(name: &str, value: &[u8]) -> Option<String> {
    if name.is_empty() || name.len() > MAX_HEADER_NAME_BYTES {
        return Some(format!(
            "header names are 1 to {MAX_HEADER_NAME_BYTES} bytes, this one has {}",
            name.len()
        ));
    }
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Some(format!(
            "header values are at most {MAX_HEADER_VALUE_BYTES} bytes, this one has {}",
            value.len()
        ));
    }
    None
}

/// A header name short enough for an error message.
fn shortened(name: &str) -> String {
    const SHOWN: usize = 64;
    if name.len() <= SHOWN {
        return name.to_owned();
    }
    let mut end = SHOWN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
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

    /// Appends `record` with its headers to the partition its key hashes to;
    /// returns where it landed once it is durable. [`MessageLog::append`] is
    /// this without headers.
    fn append_record(
        &self,
        record: NewRecord,
    ) -> impl Future<Output = Result<Position, LogError>> + Send;

    /// Appends all `records` (with their headers) atomically and durably;
    /// positions in input order.
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
    fn headers_are_built_in_order_and_found_by_exact_name() {
        let record = NewRecord::new("t", b"k", "v")
            .with_header("traceparent", "first")
            .with_header("TraceParent", "other case")
            .with_header("traceparent", "second");
        assert_eq!(
            (record.topic.as_str(), &record.key[..], &record.payload[..]),
            ("t", &b"k"[..], &b"v"[..])
        );
        let names: Vec<&str> = record.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["traceparent", "TraceParent", "traceparent"]);
        assert_eq!(header(&record.headers, "traceparent"), Some(&b"first"[..]));
        assert_eq!(
            header(&record.headers, "TraceParent"),
            Some(&b"other case"[..])
        );
        assert_eq!(header(&record.headers, "trace"), None);
        assert_eq!(header(&[], "traceparent"), None);
        assert!(NewRecord::new("t", b"k", b"v").headers.is_empty());
    }

    fn headers(n: usize, name_len: usize, value_len: usize) -> Headers {
        (0..n)
            .map(|i| (format!("{i:0>name_len$}"), vec![1; value_len]))
            .collect()
    }

    fn refusal(headers: &[(String, Vec<u8>)]) -> String {
        match check_record("sluice.events", b"k", b"v", headers) {
            Err(err @ LogError::InvalidHeader { .. }) => err.to_string(),
            other => panic!("not InvalidHeader: {other:?}"),
        }
    }

    #[test]
    fn headers_within_the_limits_pass() {
        let widest = headers(MAX_HEADERS, MAX_HEADER_NAME_BYTES, MAX_HEADER_VALUE_BYTES);
        assert!(check_record("t", b"k", b"v", &widest).is_ok());
        assert!(check_record("t", b"k", b"v", &[]).is_ok());
        assert!(check_headers("t", &headers(1, 1, 0)).is_ok());
    }

    #[test]
    fn headers_beyond_the_limits_are_refused_naming_the_header_and_why() {
        let text = refusal(&headers(MAX_HEADERS + 1, 3, 1));
        assert!(text.contains("`016`"), "names the 17th: {text}");
        assert!(
            text.contains("at most 16 headers, this one has 17"),
            "{text}"
        );
        assert!(text.contains("`sluice.events`"), "{text}");
        let text = refusal(&headers(1, MAX_HEADER_NAME_BYTES + 1, 1));
        assert!(text.contains("1 to 255 bytes, this one has 256"), "{text}");
        assert!(text.contains("…"), "a long name is shortened: {text}");
        let text = refusal(&[(String::new(), b"x".to_vec())]);
        assert!(text.contains("this one has 0"), "{text}");
        let text = refusal(&[("traceparent".into(), vec![0; 5000])]);
        assert!(text.contains("`traceparent`"), "{text}");
        assert!(
            text.contains("at most 4096 bytes, this one has 5000"),
            "{text}"
        );
        let err = check_headers("t", &headers(1, 1, MAX_HEADER_VALUE_BYTES + 1)).unwrap_err();
        assert!(!err.is_retryable() && !err.is_not_found());
    }

    #[test]
    fn header_bytes_count_toward_the_record_limit() {
        let payload = vec![0; MAX_RECORD_BYTES - 1 - 10];
        let over = [("traceparent".to_owned(), Vec::new())]; // 11 bytes: one too many
        assert!(check_record("t", b"k", &payload, &[]).is_ok());
        let err = check_record("t", b"k", &payload, &over).unwrap_err();
        assert!(
            matches!(err, LogError::TooLarge { size, .. } if size == MAX_RECORD_BYTES + 1),
            "{err}"
        );
        let record = NewRecord::new("t", b"k", b"vv").with_header("ab", "cde");
        assert_eq!(record.size(), 1 + 2 + 2 + 3);
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
