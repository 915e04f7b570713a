//! Checks of writes that are refused or grouped: record size, commits and
//! groups' offsets, batches across topics, bad input.

use std::time::Duration;

use super::{ALL, read_exactly};
use crate::{LogError, MAX_RECORD_BYTES, MessageLog, NewRecord, partition_for};

/// A record above [`MAX_RECORD_BYTES`] is refused with
/// [`LogError::TooLarge`] naming its size, alone and in a batch, and
/// nothing of the batch is written.
pub async fn oversized_records_are_refused<L: MessageLog>(log: &L, fresh: &dyn Fn(&str) -> String) {
    let topic = fresh("oversized");
    log.create_topic(&topic, 1).await.expect("create");
    let payload = vec![7_u8; MAX_RECORD_BYTES];
    let err = log
        .append(&topic, b"k", &payload)
        .await
        .expect_err("one byte of key above the limit");
    assert!(
        matches!(&err, LogError::TooLarge { size, limit, .. }
            if *size == MAX_RECORD_BYTES + 1 && *limit == MAX_RECORD_BYTES),
        "{err}"
    );
    assert!(!err.is_retryable());
    let batch = vec![
        NewRecord::new(&topic, b"small", b"fits"),
        NewRecord::new(&topic, b"k", payload),
    ];
    let err = log.append_batch(batch).await.expect_err("oversized batch");
    assert!(matches!(err, LogError::TooLarge { .. }), "{err}");
    let none = log
        .read(&topic, 0, 0, ALL, Duration::from_millis(300))
        .await
        .expect("read");
    assert!(
        none.is_empty(),
        "a refused batch wrote {} records",
        none.len()
    );
}

/// `join` starts a group at the earliest record, `commit` stores the next
/// offset to read and `committed` returns it; a reader resumes there; groups
/// are independent; commits beyond the end are refused.
pub async fn commits_round_trip_and_resume<L: MessageLog>(log: &L, fresh: &dyn Fn(&str) -> String) {
    let topic = fresh("groups");
    let (group, other) = (fresh("group"), fresh("other"));
    log.create_topic(&topic, 2).await.expect("create topic");
    assert_eq!(
        log.committed(&group, &topic, 0).await.expect("committed"),
        None
    );
    log.join(&group, &topic).await.expect("join");
    for p in 0..2 {
        assert_eq!(
            log.committed(&group, &topic, p).await.expect("committed"),
            Some(0),
            "join starts at the earliest record of partition {p}"
        );
    }
    assert_eq!(
        log.committed(&other, &topic, 0).await.expect("committed"),
        None,
        "a group that never joined has no offset"
    );

    let key = b"same-key";
    let p = partition_for(key, 2);
    for i in 0..10_u8 {
        let pos = log.append(&topic, key, &[i]).await.expect("append");
        assert_eq!(
            pos,
            crate::Position {
                partition: p,
                offset: i64::from(i)
            }
        );
    }
    log.commit(&group, &topic, p, 4).await.expect("commit");
    assert_eq!(
        log.committed(&group, &topic, p).await.expect("committed"),
        Some(4)
    );
    assert_eq!(
        log.committed(&group, &topic, 1 - p)
            .await
            .expect("committed"),
        Some(0),
        "the other partition is untouched"
    );

    // Resume as a restarted consumer would: from the committed offset.
    let from = log
        .committed(&group, &topic, p)
        .await
        .expect("committed")
        .unwrap();
    let rest = read_exactly(log, &topic, p, from, 6).await;
    assert_eq!(rest[0].offset, 4);
    assert_eq!(rest[0].payload, [4]);

    let err = log
        .commit(&group, &topic, p, 11)
        .await
        .expect_err("beyond the end");
    assert!(
        matches!(
            err,
            LogError::OffsetOutOfRange {
                offset: 11,
                end: 10,
                ..
            }
        ),
        "{err}"
    );
    log.commit(&group, &topic, p, 10)
        .await
        .expect("commit at the end");
    log.join(&group, &topic).await.expect("join again");
    assert_eq!(
        log.committed(&group, &topic, p).await.expect("committed"),
        Some(10),
        "joining again keeps the committed offset"
    );
    log.commit(&other, &topic, p, 2)
        .await
        .expect("commit other");
    assert_eq!(
        log.committed(&other, &topic, p).await.expect("committed"),
        Some(2)
    );
    assert_eq!(
        log.committed(&group, &topic, p).await.expect("committed"),
        Some(10)
    );
}

/// One batch may span topics; positions come back in input order and
/// offsets per partition follow the batch order.
pub async fn batches_span_topics<L: MessageLog>(log: &L, fresh: &dyn Fn(&str) -> String) {
    let (a, b) = (fresh("batch-a"), fresh("batch-b"));
    log.create_topic(&a, 1).await.expect("create a");
    log.create_topic(&b, 1).await.expect("create b");
    assert!(
        log.append_batch(Vec::new())
            .await
            .expect("empty batch")
            .is_empty()
    );
    let batch: Vec<NewRecord> = (0..10_u8)
        .map(|i| NewRecord::new(if i % 2 == 0 { &a } else { &b }, [i], [i; 10]))
        .collect();
    let positions = log.append_batch(batch).await.expect("append batch");
    let offsets: Vec<i64> = positions.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
    for (topic, first) in [(&a, 0_u8), (&b, 1)] {
        let got = read_exactly(log, topic, 0, 0, 5).await;
        let keys: Vec<u8> = got.iter().map(|r| r.key[0]).collect();
        let want: Vec<u8> = (0..5).map(|i| first + 2 * i).collect();
        assert_eq!(keys, want, "{topic}");
    }
}

/// Invalid names, partition counts, unknown topics and partitions are
/// refused with the same errors on every back end.
pub async fn bad_input_is_refused<L: MessageLog>(log: &L, fresh: &dyn Fn(&str) -> String) {
    assert!(matches!(
        log.create_topic("bad topic", 1).await,
        Err(LogError::InvalidName { .. })
    ));
    let topic = fresh("bad");
    assert!(matches!(
        log.create_topic(&topic, 0).await,
        Err(LogError::BadPartitionCount { .. })
    ));
    log.create_topic(&topic, 2).await.expect("create");
    log.create_topic(&topic, 2)
        .await
        .expect("create again, same count");
    let err = log
        .create_topic(&topic, 3)
        .await
        .expect_err("another count");
    assert!(
        matches!(
            err,
            LogError::PartitionMismatch {
                existing: 2,
                requested: 3,
                ..
            }
        ),
        "{err}"
    );
    let missing = fresh("missing");
    assert!(matches!(
        log.append(&missing, b"k", b"v").await,
        Err(LogError::TopicNotFound { .. })
    ));
    assert!(matches!(
        log.partitions(&missing).await,
        Err(LogError::TopicNotFound { .. })
    ));
    for partition in [2, -1] {
        assert!(matches!(
            log.read(&topic, partition, 0, ALL, Duration::ZERO).await,
            Err(LogError::PartitionNotFound { .. })
        ));
    }
    let group = fresh("group");
    assert!(matches!(
        log.commit(&group, &topic, 0, 1).await,
        Err(LogError::OffsetOutOfRange { end: 0, .. })
    ));
    assert!(matches!(
        log.commit("", &topic, 0, 0).await,
        Err(LogError::InvalidName { .. })
    ));
}
