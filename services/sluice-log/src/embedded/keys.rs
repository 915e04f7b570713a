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

/// Set in a record value's key-length word when headers follow the key.
const HAS_HEADERS: u32 = 0x8000_0000;

/// A record's value: `key length (u32) ++ key ++ payload` without headers
/// (the only layout before headers existed, so old records still read).
/// With headers, the key length has [`HAS_HEADERS`] set and the headers
/// come between key and payload: `count (u16)`, then per header
/// `name length (u16) ++ name ++ value length (u32) ++ value`. Lengths fit:
/// keys are below [`crate::MAX_RECORD_BYTES`], headers within
/// [`crate::check_headers`]' limits.
pub(super) fn record_value(key: &[u8], payload: &[u8], headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len() + headers_len(headers) + payload.len());
    let mut key_len = key.len() as u32;
    if !headers.is_empty() {
        key_len |= HAS_HEADERS;
    }
    out.extend_from_slice(&key_len.to_be_bytes());
    out.extend_from_slice(key);
    if !headers.is_empty() {
        put_headers(&mut out, headers);
    }
    out.extend_from_slice(payload);
    out
}

/// The bytes [`put_headers`] writes for `headers`; none for no headers.
fn headers_len(headers: &[(String, Vec<u8>)]) -> usize {
    if headers.is_empty() {
        return 0;
    }
    2 + headers
        .iter()
        .map(|(name, value)| 2 + name.len() + 4 + value.len())
        .sum::<usize>()
}

/// `count (u16) ++ (name length (u16) ++ name ++ value length (u32) ++ value)*`.
fn put_headers(out: &mut Vec<u8>, headers: &[(String, Vec<u8>)]) {
    out.extend_from_slice(&(headers.len() as u16).to_be_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
}

/// A record's value, decoded ([`record_value`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoredRecord {
    pub(super) key: Vec<u8>,
    pub(super) payload: Vec<u8>,
    pub(super) headers: crate::Headers,
}

/// Splits a record's value into key, headers and payload; refuses values
/// shorter than their lengths say with [`LogError::Corrupt`].
pub(super) fn decode_record(value: &[u8]) -> Result<StoredRecord, LogError> {
    let mut bytes = Bytes(value);
    let word = bytes.u32("key length")?;
    let key = bytes.take((word & !HAS_HEADERS) as usize, "key")?.to_vec();
    let headers = if word & HAS_HEADERS != 0 {
        decode_headers(&mut bytes)?
    } else {
        Vec::new()
    };
    Ok(StoredRecord {
        key,
        payload: bytes.0.to_vec(),
        headers,
    })
}

/// The headers [`put_headers`] wrote.
fn decode_headers(bytes: &mut Bytes<'_>) -> Result<crate::Headers, LogError> {
    let count = bytes.u16("header count")?;
    let mut headers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = bytes.u16("header name length")?;
        let name = bytes.take(usize::from(len), "header name")?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| LogError::Corrupt {
            what: "a record's header name is not UTF-8".into(),
        })?;
        let len = bytes.u32("header value length")?;
        let value = bytes.take(len as usize, "header value")?.to_vec();
        headers.push((name, value));
    }
    Ok(headers)
}

/// The undecoded rest of a record's value.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    /// The next `n` bytes, which hold the record's `what`.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], LogError> {
        if self.0.len() < n {
            return Err(LogError::Corrupt {
                what: format!("a record ends inside its {what}"),
            });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self, what: &str) -> Result<u16, LogError> {
        let bytes = self.take(2, what)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, LogError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
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

    fn stored(key: &[u8], payload: &[u8], headers: &[(&str, &[u8])]) -> StoredRecord {
        StoredRecord {
            key: key.to_vec(),
            payload: payload.to_vec(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn values_round_trip() {
        let v = record_value(b"key", b"payload", &[]);
        assert_eq!(decode_record(&v).unwrap(), stored(b"key", b"payload", &[]));
        assert_eq!(decode_head(&head_value(3, 9)).unwrap(), (3, 9));
        assert!(decode_record(&[0, 0, 0, 9, 1]).is_err());
        assert!(decode_head(&[1, 2]).is_err());
    }

    #[test]
    fn values_without_headers_keep_the_old_layout() {
        let v = record_value(b"key", b"payload", &[]);
        assert_eq!(v, b"\0\0\0\x03keypayload");
        // A value written before headers existed, byte for byte.
        let old = [&[0, 0, 0, 2][..], b"k1", b"body"].concat();
        assert_eq!(decode_record(&old).unwrap(), stored(b"k1", b"body", &[]));
        let empty = [0, 0, 0, 0];
        assert_eq!(decode_record(&empty).unwrap(), stored(b"", b"", &[]));
    }

    #[test]
    fn values_with_headers_flag_the_key_length() {
        let headers = [
            ("traceparent".to_owned(), b"00-ab-cd-01".to_vec()),
            ("empty".to_owned(), Vec::new()),
            ("traceparent".to_owned(), b"second".to_vec()),
        ];
        let v = record_value(b"key", b"payload", &headers);
        let want = [
            &[0x80, 0, 0, 3][..],
            b"key",
            &[0, 3],
            &[0, 11],
            b"traceparent",
            &[0, 0, 0, 11],
            b"00-ab-cd-01",
            &[0, 5],
            b"empty",
            &[0, 0, 0, 0],
            &[0, 11],
            b"traceparent",
            &[0, 0, 0, 6],
            b"second",
            b"payload",
        ]
        .concat();
        assert_eq!(v, want);
        let got = decode_record(&v).unwrap();
        assert_eq!(
            (got.key.as_slice(), got.payload.as_slice()),
            (&b"key"[..], &b"payload"[..])
        );
        assert_eq!(got.headers, headers, "order and repeats kept");
        let v = record_value(b"", b"", &headers[1..2]);
        assert_eq!(
            decode_record(&v).unwrap(),
            stored(b"", b"", &[("empty", b"")])
        );
    }

    #[test]
    fn truncated_values_are_corrupt() {
        let headers = [("name".to_owned(), b"value".to_vec())];
        let v = record_value(b"key", b"", &headers);
        // Every proper prefix ends inside a length, the key or a header.
        for end in 0..v.len() {
            let err = decode_record(&v[..end]).expect_err("truncated");
            assert!(matches!(err, LogError::Corrupt { .. }), "{end}: {err}");
        }
        assert!(decode_record(&v).is_ok());
        let old = record_value(b"key", b"", &[]);
        for end in 0..old.len() {
            assert!(decode_record(&old[..end]).is_err(), "old layout, {end}");
        }
        let bad_name = [&[0x80, 0, 0, 0, 0, 1, 0, 1][..], &[0xff], &[0, 0, 0, 0]].concat();
        let err = decode_record(&bad_name).expect_err("name not UTF-8");
        assert!(err.to_string().contains("UTF-8"), "{err}");
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
