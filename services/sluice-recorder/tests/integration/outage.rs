//! The write path survives Cassandra being unreachable: at start, and cut
//! mid-run. Reached through an in-test TCP proxy to the real node (the one
//! Cassandra is shared with parallel tests, so it is never stopped). While
//! writes fail, nothing is committed; once it is back, nothing is lost and
//! nothing double counted.

use std::time::Duration;

use sluice_proto::v1::EventKind;
use sluice_recorder::Metrics;

use crate::common::*;

const IP: &str = "203.0.113.9";

fn delivered(range: std::ops::Range<usize>) -> Vec<sluice_proto::v1::Event> {
    range
        .map(|i| event(EventKind::Delivered, &format!("o-{i}"), IP, "google"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_outage_delays_commits_and_loses_nothing() {
    let (mut config, session) = fresh_config().await;
    let upstream = sluice_cql::CqlConfig::from_env().contact_points;
    let upstream = upstream
        .split(',')
        .next()
        .expect("a contact point")
        .trim()
        .to_owned();
    let proxy = Proxy::start(upstream, false).await;
    config.cassandra = proxy.addr.to_string();
    config.connect_timeout = sluice_node::Span::secs(2);

    // Unreachable at start: the recorder waits, consumes nothing, commits nothing.
    let recorder = start(&config).await;
    produce(&config, &delivered(0..100)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        committed(&config).await,
        0,
        "nothing committed while Cassandra is unreachable"
    );
    proxy.set_open(true);
    wait_until("first 100 committed", Duration::from_secs(60), || async {
        committed(&config).await == 100
    })
    .await;

    // Cut mid-run: writes fail and are retried; offsets stay where they were.
    proxy.set_open(false);
    produce(&config, &delivered(100..250)).await;
    let m = recorder.metrics.clone();
    wait_until(
        "writes failing and retried",
        Duration::from_secs(30),
        || async { Metrics::get(&m.write_retries) >= 2 },
    )
    .await;
    assert_eq!(
        committed(&config).await,
        100,
        "no commit past a failed write"
    );
    proxy.set_open(true);
    wait_until("all 250 committed", Duration::from_secs(90), || async {
        committed(&config).await == 250
    })
    .await;

    let ks = &config.keyspace;
    assert_eq!(
        daily(&session, ks, "ip", IP, "delivered").await,
        250,
        "none lost, none doubled"
    );
    assert_eq!(Metrics::get(&m.counted), 250);
    recorder.stop().await;
    drop_keyspace(&session, ks).await;
}
