//! The behaviour every [`MessageLog`] back end must share, as one suite that
//! both back ends run: `tests/embedded_conformance.rs` against
//! [`crate::EmbeddedLog`], `tests/kafka_conformance.rs` against Kafka.
//! Enabled by the cargo feature `conformance`.
//!
//! Each check is an async function taking the log and `fresh`, which returns
//! a topic or group name no other check (or earlier run) uses, built from a
//! label of at most 40 characters of `[a-z.-]`. Checks panic on a violation.
//!
//! The suite only asserts what the trait promises on every back end. A read
//! returns at least one record when one is available and at most the limit,
//! but may return fewer than the limit although more exist (Kafka hands out
//! what one fetch brought), so reading "everything" loops. Atomicity of
//! batches and retention are properties of the embedded back end; its own
//! tests cover them.

use std::time::{Duration, Instant};

mod headers;
mod lag;
mod members;
mod writes;

pub use headers::*;
pub use lag::*;
pub use members::*;
pub use writes::*;

use crate::{MessageLog, ReadLimit, Record, partition_for};

/// How long a check waits for records it knows are there.
pub(crate) const PATIENCE: Duration = Duration::from_secs(15);

pub(crate) const ALL: ReadLimit = ReadLimit {
    max_records: usize::MAX,
    max_bytes: usize::MAX,
};

/// One `#[tokio::test]` per check of this suite, for a back end's test
/// crate: `conformance_tests!(open, fresh);` where `open()` is an async fn
/// returning `(guard, log)` (the guard lives as long as the test, e.g. a temp
/// dir) and `fresh` is the name source. The list of checks lives here only,
/// so a new check runs on every back end.
#[macro_export]
macro_rules! conformance_tests {
    ($open:path, $fresh:path) => {
        $crate::conformance_tests!(@each $open, $fresh;
            offsets_are_dense_and_follow_the_key,
            read_limits_hold,
            read_waits_for_an_append,
            reads_below_the_start_begin_at_the_earliest,
            commits_round_trip_and_resume,
            batches_span_topics,
            bad_input_is_refused,
            a_member_reads_every_record_once,
            a_member_resumes_after_the_commit,
            paused_partitions_wait,
            large_records_round_trip,
            oversized_records_are_refused,
            a_new_member_is_assigned_its_partitions,
            a_leaving_member_has_its_partitions_revoked,
            headers_round_trip,
            bad_headers_are_refused,
            lag_counts_the_uncommitted_records,
        );
    };
    (@each $open:path, $fresh:path; $($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (_guard, log) = $open().await;
            $crate::conformance::$check(&log, &$fresh).await;
        }
    )*};
}

/// Every check in order, each with fresh names.
pub async fn run_all<L: MessageLog>(log: &L, fresh: &dyn Fn(&str) -> String) {
    offsets_are_dense_and_follow_the_key(log, fresh).await;
    read_limits_hold(log, fresh).await;
    read_waits_for_an_append(log, fresh).await;
    reads_below_the_start_begin_at_the_earliest(log, fresh).await;
    commits_round_trip_and_resume(log, fresh).await;
    batches_span_topics(log, fresh).await;
    bad_input_is_refused(log, fresh).await;
    a_member_reads_every_record_once(log, fresh).await;
    a_member_resumes_after_the_commit(log, fresh).await;
    paused_partitions_wait(log, fresh).await;
    large_records_round_trip(log, fresh).await;
    oversized_records_are_refused(log, fresh).await;
    a_new_member_is_assigned_its_partitions(log, fresh).await;
    a_leaving_member_has_its_partitions_revoked(log, fresh).await;
    headers_round_trip(log, fresh).await;
    bad_headers_are_refused(log, fresh).await;
    lag_counts_the_uncommitted_records(log, fresh).await;
}

/// A 5 MiB record (a large message with attachments) is stored and read
/// back intact; services take up to 25 MB.
pub async fn large_records_round_trip<L: MessageLog>(log: &L, fresh: &dyn Fn(&str) -> String) {
    let topic = fresh("large");
    log.create_topic(&topic, 1).await.expect("create");
    // Incompressible-ish bytes, so compression does not hide the size.
    let payload: Vec<u8> = (0..5 * 1024 * 1024_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let at = log
        .append(&topic, b"big", &payload)
        .await
        .expect("append a 5 MiB record");
    let got = read_exactly(log, &topic, at.partition, at.offset, 1).await;
    assert_eq!(got[0].payload.len(), payload.len(), "size");
    assert!(got[0].payload == payload, "content of the 5 MiB record");
}

/// Reads `count` records of a partition from `from`, in as many reads as it
/// takes; fails if they do not arrive within [`PATIENCE`].
pub async fn read_exactly<L: MessageLog>(
    log: &L,
    topic: &str,
    partition: i32,
    from: i64,
    count: usize,
) -> Vec<Record> {
    let deadline = Instant::now() + PATIENCE;
    let mut out: Vec<Record> = Vec::new();
    let mut next = from;
    while out.len() < count {
        let wait = deadline.saturating_duration_since(Instant::now());
        assert!(
            !wait.is_zero(),
            "{topic}/{partition}: only {} of {count} records from {from} arrived",
            out.len()
        );
        let got = log
            .read(topic, partition, next, ALL, wait)
            .await
            .expect("read");
        if let Some(last) = got.last() {
            next = last.offset + 1;
        }
        out.extend(got);
    }
    assert_eq!(
        out.len(),
        count,
        "{topic}/{partition}: more records than appended"
    );
    out
}

/// Offsets start at 0 and grow by one per record in the partition the key's
/// [`partition_for`] names; reading a partition returns exactly its records.
pub async fn offsets_are_dense_and_follow_the_key<L: MessageLog>(
    log: &L,
    fresh: &dyn Fn(&str) -> String,
) {
    let topic = fresh("dense");
    log.create_topic(&topic, 3).await.expect("create topic");
    assert_eq!(log.partitions(&topic).await.expect("partitions"), 3);
    let mut expected: Vec<Vec<(String, String)>> = vec![Vec::new(); 3];
    for i in 0..30 {
        let (key, payload) = (format!("m{i}"), format!("payload {i}"));
        let pos = log
            .append(&topic, key.as_bytes(), payload.as_bytes())
            .await
            .expect("append");
        assert_eq!(pos.partition, partition_for(key.as_bytes(), 3), "{key}");
        let part = &mut expected[pos.partition as usize];
        assert_eq!(pos.offset, part.len() as i64, "{key}: dense offsets");
        part.push((key, payload));
    }
    for (p, records) in expected.iter().enumerate() {
        let got = read_exactly(log, &topic, p as i32, 0, records.len()).await;
        for (offset, (record, (key, payload))) in got.iter().zip(records).enumerate() {
            assert_eq!(record.offset, offset as i64);
            assert_eq!(record.partition, p as i32);
            assert_eq!(record.key, key.as_bytes());
            assert_eq!(record.payload, payload.as_bytes());
        }
    }
}

/// A read starts at `from`, returns consecutive records, and respects
/// `max_records` and `max_bytes`, but always returns at least one record.
pub async fn read_limits_hold<L: MessageLog>(log: &L, fresh: &dyn Fn(&str) -> String) {
    let topic = fresh("limits");
    log.create_topic(&topic, 1).await.expect("create topic");
    for i in 0..10_u8 {
        log.append(&topic, &[i], &[i; 100]).await.expect("append");
    }
    let short = Duration::from_secs(5);
    let topic = topic.as_str();
    let read = |from: i64, max_records: usize, max_bytes: usize| async move {
        let limit = ReadLimit {
            max_records,
            max_bytes,
        };
        log.read(topic, 0, from, limit, short).await.expect("read")
    };
    let got = read(4, 3, usize::MAX).await;
    assert!((1..=3).contains(&got.len()), "max_records 3: {}", got.len());
    for (r, offset) in got.iter().zip(4..) {
        assert_eq!((r.offset, r.key.as_slice()), (offset, &[offset as u8][..]));
        assert_eq!(r.payload, vec![offset as u8; 100]);
    }
    // 101 bytes per record: the cap is reached after the second.
    let got = read(0, 10, 150).await;
    assert!((1..=2).contains(&got.len()), "max_bytes 150: {}", got.len());
    assert_eq!(got[0].offset, 0);
    let got = read(7, 10, 1).await;
    assert_eq!(got.len(), 1, "always one record, even above max_bytes");
    assert_eq!(got[0].offset, 7);
    let got = read(9, 10, usize::MAX).await;
    assert_eq!(got.len(), 1, "only the last record is left");
    assert_eq!(got[0].offset, 9);
}

/// An empty partition makes a read wait `wait` and return nothing; an append
/// during the wait ends it with the new record.
pub async fn read_waits_for_an_append<L: MessageLog>(log: &L, fresh: &dyn Fn(&str) -> String) {
    let topic = fresh("wait");
    log.create_topic(&topic, 1).await.expect("create topic");
    let wait = Duration::from_millis(300);
    let start = Instant::now();
    let empty = log
        .read(&topic, 0, 0, ReadLimit::default(), wait)
        .await
        .expect("read");
    assert!(empty.is_empty(), "nothing was appended");
    assert!(
        start.elapsed() >= wait,
        "returned after {:?}",
        start.elapsed()
    );

    let reader = log.read(&topic, 0, 0, ReadLimit::default(), PATIENCE);
    let writer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        log.append(&topic, b"k", b"hello").await.expect("append")
    };
    let start = Instant::now();
    let (got, pos) = tokio::join!(reader, writer);
    let got = got.expect("read");
    assert!(
        start.elapsed() < PATIENCE,
        "the append ended the wait only after {:?}",
        start.elapsed()
    );
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].offset, got[0].payload.as_slice()),
        (pos.offset, &b"hello"[..])
    );

    // Beyond the end: nothing, until records reach that offset.
    let got = log
        .read(&topic, 0, 5, ReadLimit::default(), wait)
        .await
        .expect("read beyond the end");
    assert!(got.is_empty(), "offsets 1.. do not exist yet: {got:?}");
}

/// A `from` below the earliest kept record (here: negative) reads from the
/// earliest record.
pub async fn reads_below_the_start_begin_at_the_earliest<L: MessageLog>(
    log: &L,
    fresh: &dyn Fn(&str) -> String,
) {
    let topic = fresh("below");
    log.create_topic(&topic, 1).await.expect("create topic");
    for i in 0..3_u8 {
        log.append(&topic, &[i], &[i]).await.expect("append");
    }
    for from in [-1, -2, -100, i64::MIN] {
        let got = log
            .read(&topic, 0, from, ALL, PATIENCE)
            .await
            .expect("read");
        assert_eq!(got.first().map(|r| r.offset), Some(0), "from {from}");
    }
}
