//! Byte layout of the two keyspaces (see `docs/message-log.md`).
//!
//! Integers are big-endian so that byte order is numeric order; offsets and
//! partitions are never negative. Topic names cannot contain a NUL byte, so
//! `topic ++ 0x00` is an unambiguous prefix.

use crate::LogError;

const TOPIC: &[u8] = b"t\0";
const HEAD: &[u8] = b"h\0";
const COMMIT: &[u8] = b"c\0";

/// The key of a record in the `records` keyspace.
pub(super) fn record(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut key = partition_prefix(topic, partition);
    key.extend_from_slice(&(offset as u64).to_be_bytes());
    key
}

/// `topic ++ 0x00 ++ partition`: shared by all records of a partition.
fn partition_prefix(topic: &str, partition: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(topic.len() + 13);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&(partition as u32).to_be_bytes());
    key
}

/// Topic catalogue entry; its value is the partition count.
pub(super) fn topic(topic: &str) -> Vec<u8> {
    [TOPIC, topic.as_bytes()].concat()
}

/// Prefix of all topic catalogue entries.
pub(super) fn topics_prefix() -> &'static [u8] {
    TOPIC
}

/// The topic name of a catalogue key.
pub(super) fn topic_name(key: &[u8]) -> Result<String, LogError> {
    String::from_utf8(key[TOPIC.len()..].to_vec()).map_err(|_| LogError::Corrupt {
        what: "a topic name is not UTF-8".into(),
    })
}

/// A partition's head entry; its value is [`head_value`].
pub(super) fn head(topic: &str, partition: i32) -> Vec<u8> {
    [HEAD, &partition_prefix(topic, partition)].concat()
}

/// Prefix of the committed offsets of every group on one partition.
pub(super) fn commits_prefix(topic: &str, partition: i32) -> Vec<u8> {
    [COMMIT, &partition_prefix(topic, partition)].concat()
}

/// One group's committed offset on one partition.
pub(super) fn commit(topic: &str, partition: i32, group: &str) -> Vec<u8> {
    [
        commits_prefix(topic, partition).as_slice(),
        group.as_bytes(),
    ]
    .concat()
}

/// `low ++ next`: the earliest retained offset and the next offset to assign.
pub(super) fn head_value(low: i64, next: i64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&low.to_be_bytes());
    out[8..].copy_from_slice(&next.to_be_bytes());
    out
}

pub(super) fn decode_head(value: &[u8]) -> Result<(i64, i64), LogError> {
    Ok((
        decode_i64(&value[..8.min(value.len())])?,
        decode_i64(value.get(8..).unwrap_or(&[]))?,
    ))
}

pub(super) fn decode_i64(value: &[u8]) -> Result<i64, LogError> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| LogError::Corrupt {
        what: format!("an offset has {} bytes, not 8", value.len()),
    })?;
    Ok(i64::from_be_bytes(bytes))
}

/// A record's value: `key length (u32) ++ key ++ payload`.
pub(super) fn record_value(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len() + payload.len());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(payload);
    out
}

/// Splits a record's value into key and payload.
pub(super) fn decode_record(value: &[u8]) -> Result<(Vec<u8>, Vec<u8>), LogError> {
    let corrupt = || LogError::Corrupt {
        what: "a record is shorter than its key length".into(),
    };
    let len: [u8; 4] = value
        .get(..4)
        .ok_or_else(corrupt)?
        .try_into()
        .map_err(|_| corrupt())?;
    let end = 4 + u32::from_be_bytes(len) as usize;
    let key = value.get(4..end).ok_or_else(corrupt)?;
    Ok((key.to_vec(), value[end..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::{check_group, check_topic};

    #[test]
    fn record_keys_sort_by_partition_then_offset() {
        let a = record("t", 0, 255);
        let b = record("t", 0, 256);
        let c = record("t", 1, 0);
        let d = record("t.x", 0, 0);
        assert!(a < b && b < c && c < d);
    }

    #[test]
    fn values_round_trip() {
        let v = record_value(b"key", b"payload");
        assert_eq!(
            decode_record(&v).unwrap(),
            (b"key".to_vec(), b"payload".to_vec())
        );
        assert_eq!(decode_head(&head_value(3, 9)).unwrap(), (3, 9));
        assert!(decode_record(&[0, 0, 0, 9, 1]).is_err());
        assert!(decode_head(&[1, 2]).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_topic("sluice.outbound.default.delay-1m").is_ok());
        assert!(check_topic("").is_err());
        assert!(check_topic("a b").is_err());
        assert!(check_topic("a\0b").is_err());
        assert!(check_group("sluice-sender-default").is_ok());
        assert!(check_group("").is_err());
    }
}
