use super::*;
use sluice_log::EmbeddedLog;

fn rec(topic: &str, partition: i32, offset: i64) -> RecordRef {
    RecordRef {
        topic: topic.into(),
        partition,
        offset,
        trace: None,
    }
}

#[test]
fn keys_land_in_their_partition() {
    for count in [1, 4, 12] {
        for p in 0..count {
            assert_eq!(partition_for(&key_for(p, count), count), p);
        }
    }
}

#[test]
fn entries_name_their_source_partition() {
    assert_eq!(parse_entry(b"out.a 2 17"), Some(("out.a", 2, 17)));
    assert_eq!(parse_entry(b"out.a x 17"), None);
    assert_eq!(parse_entry(b"garbage"), None);
}

async fn open(log: &Log) -> FateIndex {
    let sources = vec!["out".to_owned(), "out.delay-1m".to_owned()];
    FateIndex::open(log.clone(), "out.fates".into(), "g".into(), &sources)
        .await
        .expect("open the fate index")
}

/// What one owner settled above its committed offset, the next owner skips;
/// what is below the committed offset is forgotten, and the next owner reads
/// the fate partition only from the committed fate position.
#[tokio::test]
async fn a_new_owner_skips_what_the_old_one_settled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log: Log = EmbeddedLog::open(dir.path()).expect("open log").into();
    log.ensure_topics(&["out".into(), "out.delay-1m".into()])
        .await
        .expect("topics");
    let key = key_for(1, log.partitions("out").await.expect("partitions"));
    for _ in 0..9 {
        log.append("out", &key, b"mail").await.expect("append");
    }

    let first = open(&log).await;
    first.load(&[("out".into(), 1)]).await;
    for offset in [0, 1, 5, 7] {
        first.settle(&rec("out", 1, offset)).await;
    }
    first.settle(&rec("out.delay-1m", 1, 3)).await;
    // Offsets 0 and 1 are done; 2 is slow, so the committed offset is 2.
    log.commit("g", "out", 1, 2).await.expect("commit");
    first
        .commit(&[Commit {
            topic: "out".into(),
            partition: 1,
            next_offset: 2,
        }])
        .await;
    let position = log.committed("g.fates.out", "out.fates", 1).await;
    assert_eq!(
        position.expect("read"),
        Some(2),
        "past the entries of 0 and 1"
    );

    let second = open(&log).await;
    second
        .load(&[("out".into(), 1), ("out.delay-1m".into(), 1)])
        .await;
    let settled: Vec<i64> = (0..9)
        .filter(|&o| second.is_settled(&rec("out", 1, o)))
        .collect();
    assert_eq!(settled, [5, 7]);
    assert!(second.is_settled(&rec("out.delay-1m", 1, 3)));
    assert!(!second.is_settled(&rec("out", 2, 5)), "another partition");
}
