//! Semantics of the embedded message log: offsets, groups, retention, reopen.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use sluice_log::{EmbeddedLog, LogError, MessageLog, NewRecord, ReadLimit, partition_for};

const ALL: ReadLimit = ReadLimit {
    max_records: usize::MAX,
    max_bytes: usize::MAX,
};

fn open() -> (tempfile::TempDir, EmbeddedLog) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = EmbeddedLog::open(dir.path()).expect("open log");
    (dir, log)
}

#[test]
fn offsets_are_dense_per_partition_and_follow_the_key() {
    let (_dir, log) = open();
    log.create_topic_blocking("t", 3).unwrap();
    let mut next = [0_i64; 3];
    for i in 0..60 {
        let key = format!("m{i}");
        let pos = log.append_blocking("t", key.as_bytes(), b"x").unwrap();
        assert_eq!(pos.partition, partition_for(key.as_bytes(), 3));
        assert_eq!(pos.offset, next[pos.partition as usize]);
        next[pos.partition as usize] += 1;
    }
    for p in 0..3 {
        let got = log.read_blocking("t", p, 0, ALL).unwrap();
        let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..next[p as usize]).collect::<Vec<_>>());
    }
}

#[test]
fn batches_span_topics_and_read_limits_hold() {
    let (_dir, log) = open();
    log.create_topic_blocking("a", 1).unwrap();
    log.create_topic_blocking("b", 1).unwrap();
    let batch: Vec<NewRecord> = (0..10)
        .map(|i| NewRecord {
            topic: if i % 2 == 0 { "a" } else { "b" }.into(),
            key: vec![i],
            payload: vec![i; 100],
            headers: Vec::new(),
        })
        .collect();
    let pos = log.append_batch_blocking(&batch).unwrap();
    let offsets: Vec<i64> = pos.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
    let limit = ReadLimit {
        max_records: 3,
        max_bytes: usize::MAX,
    };
    assert_eq!(log.read_blocking("a", 0, 1, limit).unwrap().len(), 3);
    let limit = ReadLimit {
        max_records: 10,
        max_bytes: 150,
    };
    let got = log.read_blocking("a", 0, 0, limit).unwrap();
    assert_eq!(got.len(), 2, "stops once the byte cap is reached");
    let limit = ReadLimit {
        max_records: 10,
        max_bytes: 1,
    };
    assert_eq!(
        log.read_blocking("a", 0, 0, limit).unwrap().len(),
        1,
        "always one record"
    );
    assert_eq!(got[1].payload, vec![2; 100]);
    assert_eq!(got[1].key, vec![2]);
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let (_dir, log) = open();
    assert!(matches!(
        log.create_topic_blocking("bad topic", 1),
        Err(LogError::InvalidName { .. })
    ));
    assert!(matches!(
        log.create_topic_blocking("t", 0),
        Err(LogError::BadPartitionCount { .. })
    ));
    log.create_topic_blocking("t", 2).unwrap();
    log.create_topic_blocking("t", 2).unwrap();
    let err = log.create_topic_blocking("t", 3).unwrap_err();
    assert!(
        err.to_string().contains("already exists with 2 partitions"),
        "{err}"
    );
    assert!(matches!(
        log.append_blocking("nope", b"k", b"v"),
        Err(LogError::TopicNotFound { .. })
    ));
    assert!(matches!(
        log.read_blocking("t", 2, 0, ALL),
        Err(LogError::PartitionNotFound { .. })
    ));
    assert!(matches!(
        log.read_blocking("t", -1, 0, ALL),
        Err(LogError::PartitionNotFound { .. })
    ));
    let err = log.commit_blocking("g", "t", 0, 1).unwrap_err();
    assert!(
        matches!(err, LogError::OffsetOutOfRange { end: 0, .. }),
        "{err}"
    );
    assert!(matches!(
        log.commit_blocking("", "t", 0, 0),
        Err(LogError::InvalidName { .. })
    ));
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let (dir, _log) = open();
    let err = EmbeddedLog::open(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn commit_resume_and_retention() {
    let (dir, log) = open();
    log.create_topic_blocking("t", 1).unwrap();
    log.join_blocking("fast", "t").unwrap();
    log.join_blocking("slow", "t").unwrap();
    assert_eq!(log.committed_blocking("fast", "t", 0).unwrap(), Some(0));
    assert_eq!(log.committed_blocking("never", "t", 0).unwrap(), None);
    for i in 0..20_u8 {
        log.append_blocking("t", &[i], &[i]).unwrap();
    }
    log.commit_blocking("fast", "t", 0, 15).unwrap();
    assert_eq!(
        log.watermarks("t", 0).unwrap(),
        (0, 20),
        "slow has read nothing"
    );
    log.commit_blocking("slow", "t", 0, 5).unwrap();
    assert_eq!(log.watermarks("t", 0).unwrap(), (5, 20));
    let got = log.read_blocking("t", 0, 0, ALL).unwrap();
    assert_eq!(
        got.first().map(|r| r.offset),
        Some(5),
        "reads start at the earliest kept"
    );
    drop(log);
    let log = EmbeddedLog::open(dir.path()).unwrap();
    assert_eq!(log.committed_blocking("fast", "t", 0).unwrap(), Some(15));
    assert_eq!(log.committed_blocking("slow", "t", 0).unwrap(), Some(5));
    assert_eq!(log.watermarks("t", 0).unwrap(), (5, 20));
    log.commit_blocking("slow", "t", 0, 20).unwrap();
    assert_eq!(log.watermarks("t", 0).unwrap(), (15, 20));
    log.commit_blocking("fast", "t", 0, 20).unwrap();
    assert!(log.read_blocking("t", 0, 0, ALL).unwrap().is_empty());
    let pos = log.append_blocking("t", b"k", b"v").unwrap();
    assert_eq!(pos.offset, 20, "offsets are never reused after retention");
}

#[test]
fn a_group_that_joins_late_holds_retention_where_it_joined() {
    let (_dir, log) = open();
    log.create_topic_blocking("t", 1).unwrap();
    log.join_blocking("early", "t").unwrap();
    for i in 0..20_u8 {
        log.append_blocking("t", &[i], &[i]).unwrap();
    }
    log.commit_blocking("early", "t", 0, 5).unwrap();
    assert_eq!(log.watermarks("t", 0).unwrap(), (5, 20), "one group alone");
    log.join_blocking("late", "t").unwrap();
    assert_eq!(log.committed_blocking("late", "t", 0).unwrap(), Some(5));
    log.commit_blocking("early", "t", 0, 20).unwrap();
    assert_eq!(
        log.watermarks("t", 0).unwrap(),
        (5, 20),
        "the late group has read nothing yet"
    );
    log.commit_blocking("late", "t", 0, 12).unwrap();
    assert_eq!(log.watermarks("t", 0).unwrap(), (12, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_trait_waits_for_appends() {
    let (_dir, log) = open();
    log.create_topic("t", 1).await.unwrap();
    log.join("g", "t").await.unwrap();
    let start = std::time::Instant::now();
    let empty = log
        .read("t", 0, 0, ReadLimit::default(), Duration::from_millis(100))
        .await
        .unwrap();
    assert!(empty.is_empty() && start.elapsed() >= Duration::from_millis(100));
    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            log.read("t", 0, 0, ReadLimit::default(), Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let pos = log.append("t", b"k", b"hello").await.unwrap();
    let got = reader.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].offset, got[0].payload.as_slice()),
        (pos.offset, &b"hello"[..])
    );
    log.commit("g", "t", 0, 1).await.unwrap();
    assert_eq!(log.committed("g", "t", 0).await.unwrap(), Some(1));
    assert_eq!(log.partitions("t").await.unwrap(), 1);
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        key: u8,
        len: usize,
    },
    Commit {
        group: usize,
        partition: i32,
        frac: f64,
    },
    Reopen,
    /// The late group joins (again).
    Join,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0_u8..32, 0_usize..64).prop_map(|(key, len)| Op::Append { key, len }),
        3 => (0_usize..3, 0_i32..3, 0.0_f64..=1.0).prop_map(|(group, partition, frac)| Op::Commit { group, partition, frac }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Join),
    ]
}

/// The first two join at the start; the last one ([`Op::Join`]) later.
const GROUPS: [&str; 3] = ["g0", "g1", "late"];
const LATE: usize = 2;

/// Every record at or above the lowest commit is readable and unchanged, and
/// offsets are dense.
fn check(
    log: &EmbeddedLog,
    model: &[Vec<(u8, Vec<u8>)>],
    commits: &HashMap<(usize, i32), i64>,
) -> Result<(), TestCaseError> {
    for (p, records) in model.iter().enumerate() {
        let p = p as i32;
        // A group that has not joined holds nothing back.
        let lowest = (0..GROUPS.len())
            .filter_map(|g| commits.get(&(g, p)).copied().or((g != LATE).then_some(0)))
            .min()
            .unwrap_or(0);
        let (low, next) = log.watermarks("t", p).unwrap();
        prop_assert!(
            low <= lowest,
            "retention dropped uncommitted records: low {} > {}",
            low,
            lowest
        );
        prop_assert_eq!(next, records.len() as i64);
        let got = log.read_blocking("t", p, lowest, ALL).unwrap();
        prop_assert_eq!(got.len() as i64, next - lowest);
        for (r, offset) in got.iter().zip(lowest..) {
            prop_assert_eq!(r.offset, offset);
            let (key, payload) = &records[offset as usize];
            prop_assert_eq!(&r.key, &vec![*key]);
            prop_assert_eq!(&r.payload, payload);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_a_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EmbeddedLog::open(dir.path()).unwrap();
        log.create_topic_blocking("t", 3).unwrap();
        for g in &GROUPS[..LATE] {
            log.join_blocking(g, "t").unwrap();
        }
        let mut model: Vec<Vec<(u8, Vec<u8>)>> = vec![Vec::new(); 3];
        let mut commits: HashMap<(usize, i32), i64> = HashMap::new();
        for op in ops {
            match op {
                Op::Append { key, len } => {
                    let payload = vec![key ^ len as u8; len];
                    let pos = log.append_blocking("t", &[key], &payload).unwrap();
                    let part = &mut model[pos.partition as usize];
                    prop_assert_eq!(pos.offset, part.len() as i64, "offsets dense and increasing");
                    part.push((key, payload));
                }
                Op::Commit { group, partition, .. } if group == LATE && !commits.contains_key(&(LATE, partition)) => {}
                Op::Commit { group, partition, frac } => {
                    // Groups commit forwards only, as the services do.
                    let end = model[partition as usize].len() as i64;
                    let current = commits.get(&(group, partition)).copied().unwrap_or(0);
                    let offset = current.max((end as f64 * frac) as i64);
                    log.commit_blocking(GROUPS[group], "t", partition, offset).unwrap();
                    commits.insert((group, partition), offset);
                }
                Op::Join => {
                    log.join_blocking(GROUPS[LATE], "t").unwrap();
                    for p in 0..3 {
                        // Joining starts at the earliest record kept.
                        let low = log.watermarks("t", p).unwrap().0;
                        commits.entry((LATE, p)).or_insert(low);
                    }
                }
                Op::Reopen => {
                    drop(log);
                    log = EmbeddedLog::open(dir.path()).unwrap();
                    for ((g, p), offset) in &commits {
                        prop_assert_eq!(log.committed_blocking(GROUPS[*g], "t", *p).unwrap(), Some(*offset));
                    }
                }
            }
            check(&log, &model, &commits)?;
        }
    }
}
