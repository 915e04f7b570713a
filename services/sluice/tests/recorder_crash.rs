//! The recorder's counters stay exact across kill -9 (issue #14 item 5):
//! two `sluice recorder` processes of one group on real Kafka and
//! Cassandra; one is killed while both write (the other takes its
//! partitions), events are republished (as a sender replaying them), the
//! other is killed, and a third finishes. The stats served over Query at the end count every
//! message once: no batch lost between its claims and its counters, none
//! counted twice by the replays.

use std::time::{Duration, Instant};

use prost::Message;
use sluice_log::{KafkaConfig, KafkaLog, Log, TopicSpec};
use sluice_proto::v1::{Event, EventKind, GetStatsRequest, StatsDimension};
use sluice_testkit::cluster::{
    Tokens, cluster_names, free_addr, recorder_toml, spawn_role, wait_listening, write,
};

const MESSAGES: usize = 30_000;
const REPUBLISHED: usize = 3_000;
const TENANT: &str = "crash-tenant";

fn delivered(i: usize) -> Event {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    Event {
        event_id: format!("ev-{i}"),
        message_id: format!("m-{i}"),
        tenant: TENANT.into(),
        kind: EventKind::Delivered.into(),
        attempt: 1,
        source_ip: "192.0.2.44".into(),
        site: "gmail".into(),
        at: Some(prost_types::Timestamp {
            seconds: i64::try_from(now.as_secs()).expect("secs"),
            nanos: 0,
        }),
        ..Event::default()
    }
}

async fn produce(log: &Log, topic: &str, events: impl Iterator<Item = Event>) {
    let keyed = events.map(|e| (e.message_id.clone(), e.encode_to_vec()));
    sluice_testkit::sender::append_keyed(log, topic, keyed).await;
}

/// Delivered messages of the tenant today, as Query serves them.
async fn recorded(url: &str, token: &str) -> u64 {
    let Ok(mut client) = sluice_testkit::query::client(url, Some(token)).await else {
        return 0;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let today = sluice_recorder::time::day_of(i64::try_from(now.as_secs()).expect("secs"));
    let request = GetStatsRequest {
        dimension: StatsDimension::Tenant.into(),
        key: TENANT.into(),
        from_day: today.clone(),
        to_day: today,
    };
    match client.get_stats(request).await {
        Ok(stats) => stats.into_inner().rows.iter().map(|r| r.delivered).sum(),
        Err(_) => 0,
    }
}

/// Waits until Query reports at least `n` (or `exactly`, when set).
async fn wait_for(url: &str, token: &str, n: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let seen = recorded(url, token).await;
        if seen >= n {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "the recorder counted {seen} of {n} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills `recorder` with -9 once `url` reports at least `n`; returns the
/// count seen.
async fn kill_at(recorder: &mut tokio::process::Child, url: &str, token: &str, n: u64) -> u64 {
    let seen = wait_for(url, token, n, Duration::from_secs(180)).await;
    recorder.start_kill().expect("kill -9");
    recorder.wait().await.expect("reaped");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_counts_exactly_across_kill_9() {
    let brokers = sluice_testkit::servers::kafka("recorder-crash")
        .await
        .brokers;
    let log: Log = KafkaLog::connect(KafkaConfig::new(
        brokers.clone(),
        "sluice-recorder-crash-test",
    ))
    .await
    .expect("Kafka")
    .into();
    let (_session, keyspace) = sluice_testkit::cql::migrated_keyspace("reccrash").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = Tokens::new(dir.path());
    let names = cluster_names();
    let spec = TopicSpec {
        partitions: 6,
        replication: 1,
        min_insync_replicas: 1,
    };
    log.ensure_topics_as(&[(names.events.clone(), spec)])
        .await
        .expect("events topic");
    produce(&log, &names.events, (0..MESSAGES).map(delivered)).await;

    // Two recorders of one group, each with its own Query listener.
    let config = |name: &str, query| {
        let text = recorder_toml(query, &brokers, &keyspace, &names, &tokens);
        write(dir.path(), name, &text)
    };
    let (query_a, query_b) = (free_addr(), free_addr());
    let (path_a, path_b) = (config("a.toml", query_a), config("b.toml", query_b));
    let (url_a, url_b) = (format!("http://{query_a}"), format!("http://{query_b}"));
    let binary = env!("CARGO_BIN_EXE_sluice");
    let mut a = spawn_role(binary, "recorder", &path_a, &[], "warn");
    let mut b = spawn_role(binary, "recorder", &path_b, &[], "warn");
    wait_listening(query_a, "recorder A", Duration::from_secs(60)).await;
    wait_listening(query_b, "recorder B", Duration::from_secs(60)).await;
    // A dies while B runs: B takes A's partitions, replays what A wrote
    // but did not commit, and may race A's last writes.
    let mut kills = vec![kill_at(&mut a, &url_b, &tokens.admin, MESSAGES as u64 / 5).await];
    // A sender replays events it had published (same ids, new records).
    produce(&log, &names.events, (0..REPUBLISHED).map(delivered)).await;
    kills.push(kill_at(&mut b, &url_b, &tokens.admin, MESSAGES as u64 / 2).await);
    assert!(
        kills.iter().all(|k| (*k as usize) < MESSAGES),
        "each kill came before the end: {kills:?}"
    );
    let _last = spawn_role(binary, "recorder", &path_a, &[], "warn");
    wait_listening(query_a, "the last recorder", Duration::from_secs(60)).await;
    let url = url_a;
    let total = wait_for(
        &url,
        &tokens.admin,
        MESSAGES as u64,
        Duration::from_secs(240),
    )
    .await;
    // Whatever is still to come (a replay in flight) must not add more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = recorded(&url, &tokens.admin).await;
    println!("killed at {kills:?} counted; finally {total}, then {settled}");
    assert_eq!(total, MESSAGES as u64, "every message counted once");
    assert_eq!(settled, MESSAGES as u64, "and no more after a pause");
}
