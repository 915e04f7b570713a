//! De-duplication and offset commits across a recorder restart: the same
//! events consumed twice never count twice, and a recorder stopped
//! mid-stream hands over to the next one without losing anything.

use std::time::Duration;

use sluice_proto::v1::EventKind;
use sluice_recorder::Metrics;

use crate::common::*;

const IP: &str = "198.51.100.7";

fn delivered(range: std::ops::Range<usize>) -> Vec<sluice_proto::v1::Event> {
    range
        .map(|i| event(EventKind::Delivered, &format!("d-{i}"), IP, "google"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_and_duplicates_never_lose_or_double_count() {
    let (mut config, session) = fresh_config().await;
    config.batch_max_events = 25;
    let first = delivered(0..400);
    produce(&config, &first).await;

    // Recorder A stops mid-stream; it commits exactly what it wrote.
    let a = start(&config).await;
    wait_until(
        "recorder A counted 100 events",
        Duration::from_secs(60),
        || async { Metrics::get(&a.metrics.counted) >= 100 },
    )
    .await;
    let a_metrics = a.metrics.clone();
    a.stop().await;
    let a_done = Metrics::get(&a_metrics.counted) + Metrics::get(&a_metrics.duplicates);
    let a_committed = committed(&config).await;
    assert_eq!(
        a_committed, a_done as i64,
        "A committed exactly the events it wrote"
    );
    assert!(
        a_committed < 400,
        "A stopped mid-stream (committed {a_committed})"
    );

    // The same 400 events again (a sender replaying them), plus the same
    // event twice in a row, plus 100 new ones.
    let mut again = first.clone();
    again.push(first[0].clone());
    again.extend(delivered(400..500));
    produce(&config, &again).await;
    let total = (first.len() + again.len()) as i64;

    let b = start(&config).await;
    wait_until(
        "recorder B committed every record",
        Duration::from_secs(90),
        || async { committed(&config).await == total },
    )
    .await;
    let ks = &config.keyspace;
    assert_eq!(
        daily(&session, ks, "ip", IP, "delivered").await,
        500,
        "each message counted once"
    );
    assert_eq!(
        daily(&session, ks, "tenant", "acme", "delivered").await,
        500
    );
    assert_eq!(
        daily(&session, ks, "site", "google", "delivered").await,
        500
    );
    let counted = Metrics::get(&a_metrics.counted) + Metrics::get(&b.metrics.counted);
    let duplicates = Metrics::get(&a_metrics.duplicates) + Metrics::get(&b.metrics.duplicates);
    assert_eq!(counted, 500);
    assert_eq!(duplicates, 401, "400 replays and one in-batch repeat");
    b.stop().await;
    drop_keyspace(&session, ks).await;
}
