//! Byte encoding of the embedded ledger's keys and values. Pure.
//!
//! A key is a sequence of components. A string is `len(u32 BE) bytes`,
//! except the last component of a key, which is its raw bytes (so it sorts
//! as Cassandra sorts a text clustering column). Integers are big-endian
//! with the sign bit flipped, so byte order is numeric order. Keys sharing
//! their leading components are therefore one prefix scan, in order: the
//! days of a `(scope, key)` are adjacent and sorted, as are the hours of a day.

use crate::RecorderError;
use crate::record::{Deltas, LEGACY_COLUMNS, Part, Position};

/// Builds a key (or a value) component by component.
#[derive(Debug, Default, Clone)]
pub(crate) struct Key(pub(crate) Vec<u8>);

impl Key {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A length-prefixed string component.
    pub(crate) fn s(mut self, text: &str) -> Self {
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    /// An integer component, ordered numerically.
    pub(crate) fn i(mut self, value: i64) -> Self {
        self.0.extend_from_slice(&ordered(value));
        self
    }

    /// Raw bytes: the last component of a key.
    pub(crate) fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
}

fn ordered(value: i64) -> [u8; 8] {
    (value.cast_unsigned() ^ (1 << 63)).to_be_bytes()
}

fn corrupt(what: &str) -> RecorderError {
    RecorderError::Corrupt(format!("embedded ledger: truncated {what}"))
}

/// Reads components back, in the order they were written.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], RecorderError> {
        if self.0.len() < n {
            return Err(corrupt(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    pub(crate) fn s(&mut self) -> Result<String, RecorderError> {
        let len: [u8; 4] = self
            .take(4, "string length")?
            .try_into()
            .unwrap_or_default();
        let bytes = self.take(u32::from_be_bytes(len) as usize, "string")?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("utf-8 string"))
    }

    pub(crate) fn i(&mut self) -> Result<i64, RecorderError> {
        let bytes: [u8; 8] = self.take(8, "integer")?.try_into().unwrap_or_default();
        Ok((u64::from_be_bytes(bytes) ^ (1 << 63)).cast_signed())
    }

    /// The rest, as a string (the raw last component).
    pub(crate) fn rest(&mut self) -> Result<String, RecorderError> {
        let rest = std::mem::take(&mut self.0);
        String::from_utf8(rest.to_vec()).map_err(|_| corrupt("utf-8 string"))
    }
}

/// A value that expires: `expires_at_ms` then the payload.
pub(crate) fn expiring(expires_at_ms: i64, payload: &[u8]) -> Vec<u8> {
    Key::new().i(expires_at_ms).raw(payload).0
}

/// Splits an expiring value; `None` when it expired at or before `now_ms`.
pub(crate) fn live(value: &[u8], now_ms: i64) -> Result<Option<&[u8]>, RecorderError> {
    let mut r = Reader(value);
    let expires = r.i()?;
    Ok((expires > now_ms).then_some(r.0))
}

/// Counters of a row, each an `i64` (order-preserving encoding).
fn encode_counters(counters: &[i64]) -> Vec<u8> {
    counters.iter().fold(Key::new(), |k, v| k.i(*v)).0
}

/// The first [`LEGACY_COLUMNS`] counters of a row (the rows written before
/// the later columns existed hold only those).
pub(crate) fn encode_deltas(d: &Deltas) -> Vec<u8> {
    encode_counters(&d.0[..LEGACY_COLUMNS])
}

/// Reads the first [`LEGACY_COLUMNS`] counters; the rest stay 0.
pub(crate) fn decode_deltas(bytes: &[u8]) -> Result<Deltas, RecorderError> {
    let mut r = Reader(bytes);
    let mut d = Deltas::default();
    for slot in &mut d.0[..LEGACY_COLUMNS] {
        *slot = r.i()?;
    }
    Ok(d)
}

/// A counter part: its first [`LEGACY_COLUMNS`] counters, `through`, then
/// the counters added later (so parts written before them still read,
/// with those at 0).
pub(crate) fn encode_part(part: &Part) -> Vec<u8> {
    let mut bytes = encode_deltas(&part.deltas);
    bytes.extend_from_slice(&Key::new().i(part.through).0);
    bytes.extend_from_slice(&encode_counters(&part.deltas.0[LEGACY_COLUMNS..]));
    bytes
}

pub(crate) fn decode_part(bytes: &[u8]) -> Result<Part, RecorderError> {
    let mut deltas = decode_deltas(bytes)?;
    let mut r = Reader(bytes.get(LEGACY_COLUMNS * 8..).unwrap_or_default());
    let through = r.i()?;
    for slot in &mut deltas.0[LEGACY_COLUMNS..] {
        if r.0.is_empty() {
            break;
        }
        *slot = r.i()?;
    }
    Ok(Part { deltas, through })
}

/// A claim's holder: the event id, then the record's partition and offset.
pub(crate) fn encode_holder(event_id: &str, at: Position) -> Vec<u8> {
    Key::new()
        .s(event_id)
        .i(i64::from(at.partition))
        .i(at.offset)
        .0
}

pub(crate) fn decode_holder(bytes: &[u8]) -> Result<(String, Option<Position>), RecorderError> {
    let mut r = Reader(bytes);
    let id = r.s()?;
    let partition = i32::try_from(r.i()?).map_err(|_| {
        RecorderError::Corrupt("embedded ledger claim: partition out of range".into())
    })?;
    let offset = r.i()?;
    Ok((id, Some(Position { partition, offset })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_round_trip_and_integers_sort_numerically() {
        let key = Key::new().s("ip").s("192.0.2.1").i(-5).raw(b"detail");
        let mut r = Reader(&key.0);
        assert_eq!(r.s().expect("s"), "ip");
        assert_eq!(r.s().expect("s"), "192.0.2.1");
        assert_eq!(r.i().expect("i"), -5);
        assert_eq!(r.rest().expect("rest"), "detail");
        let sorted: Vec<Vec<u8>> = [i64::MIN, -1, 0, 1, i64::MAX]
            .iter()
            .map(|v| Key::new().i(*v).0)
            .collect();
        assert!(sorted.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn days_and_hours_of_a_partition_are_one_ordered_prefix() {
        let day = |d: &str| Key::new().s("ip").s("192.0.2.1").s(d).raw(b"gmail").0;
        let prefix = Key::new().s("ip").s("192.0.2.1").0;
        let (a, b) = (day("2026-01-31"), day("2026-02-01"));
        assert!(a < b && a.starts_with(&prefix) && b.starts_with(&prefix));
        // Another key sharing a textual prefix is not inside the scan.
        assert!(!Key::new().s("ip").s("192.0.2.10").0.starts_with(&prefix));
    }

    #[test]
    fn expiring_values_and_counters_round_trip() {
        let v = expiring(1_000, b"payload");
        assert_eq!(live(&v, 999).expect("ok"), Some(&b"payload"[..]));
        assert_eq!(live(&v, 1_000).expect("ok"), None);
        let d = Deltas([1, -2, 3, 0, 5, 6, 7, i64::MAX, 0, 0, 0]);
        assert_eq!(decode_deltas(&encode_deltas(&d)).expect("ok"), d);
        assert!(decode_deltas(&[1, 2]).is_err());
        let part = Part {
            deltas: d,
            through: 41,
        };
        assert_eq!(decode_part(&encode_part(&part)).expect("ok"), part);
        let engaged = Part {
            deltas: Deltas([0, 1, 0, 0, 0, 0, 0, 0, 4, 2, 1]),
            through: 7,
        };
        assert_eq!(decode_part(&encode_part(&engaged)).expect("ok"), engaged);
        // A part written before opens and clicks were counted: eight
        // counters and `through`; the later columns read as 0.
        let old = [
            encode_counters(&[5, 0, 0, 0, 0, 0, 0, 0]),
            Key::new().i(9).0,
        ]
        .concat();
        let read = decode_part(&old).expect("old part");
        assert_eq!(
            (
                read.deltas.get("accepted"),
                read.deltas.get("opened"),
                read.through
            ),
            (5, 0, 9)
        );
        let at = Position {
            partition: 3,
            offset: 9,
        };
        let holder = decode_holder(&encode_holder("ev-1", at)).expect("ok");
        assert_eq!(holder, ("ev-1".to_owned(), Some(at)));
    }
}
