//! Webhook dispatchers as a consumer group, with real processes: a
//! `sluice control` replica on Cassandra holding tenant `acme` and its
//! webhook, two `sluice webhooks` processes on real Kafka, and the Python
//! receiver of docs/examples, which keeps only posts whose signature
//! verifies. Events are appended to the events topic as ingest and the
//! senders write them. Both dispatchers post (the group splits the topic's
//! partitions); one is killed with -9 while events keep coming; every
//! event reaches the receiver, at least once.

use std::time::{Duration, Instant};

use prost::Message;
use sluice_log::MessageLog;
use sluice_proto::v1::{Event, EventKind, ListTenantsRequest, Webhook};
use sluice_testkit::cluster::{
    Tokens, admin, cluster_names, configure, follow_toml, free_addr, spawn_role, start_control,
    wait_listening, write,
};
use sluice_testkit::http::{body, request};
use sluice_testkit::sender::{kafka, kafka_log};
use sluice_testkit::webhooks::{SECRET, ids, receiver};

/// A dispatcher's file: the test's topics and group, short retries, its
/// metrics on `metrics`.
fn dispatcher_toml(
    brokers: &str,
    events: &str,
    id: &str,
    metrics: std::net::SocketAddr,
    follow: &str,
) -> String {
    format!(
        "brokers = \"{brokers}\"\nevents_topic = \"{events}\"\ngroup = \"wh-{id}\"\n\
         retry_topic_prefix = \"sluice.test.wh-retry.{id}\"\n\
         deliveries_topic = \"sluice.test.wh-deliveries.{id}\"\n\
         retry_delays = [\"1s\", \"2s\"]\nretry_window = \"10m\"\nallow_private_addresses = true\n\
         drain_timeout = \"2s\"\n\n[metrics]\nlisten = \"{metrics}\"\n\n{follow}"
    )
}

/// Posts a dispatcher made that were delivered, from its metrics.
async fn delivered_by(metrics: std::net::SocketAddr) -> u64 {
    let answer = request(&metrics.to_string(), "GET", "/metrics", &[], b"").await;
    body(&answer)
        .lines()
        .find(|l| l.starts_with("sluice_webhooks_posts_total{outcome=\"delivered\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Appends `n` `delivered` events of tenant acme, numbered from `from`.
async fn append(log: &sluice_log::Log, topic: &str, from: usize, n: usize) {
    for i in from..from + n {
        let event = Event {
            event_id: format!("ev-{i:05}"),
            kind: EventKind::Delivered.into(),
            message_id: format!("m-{i:05}"),
            tenant: "acme".into(),
            recipient: format!("user{i}@gmail.test"),
            attempt: 1,
            at: Some(std::time::SystemTime::now().into()),
            ..Default::default()
        };
        log.append(topic, event.message_id.as_bytes(), &event.encode_to_vec())
            .await
            .expect("append an event");
    }
}

async fn wait_for(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_share_the_events_and_lose_none_when_one_is_killed() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let (session, keyspace) = sluice_testkit::cql::migrated_keyspace("webhooks_cluster").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let tokens = Tokens::new(root);
    let names = cluster_names();
    let binary = env!("CARGO_BIN_EXE_sluice");
    log.ensure_topics(std::slice::from_ref(&names.events))
        .await
        .expect("events topic");

    let (control, control_node) = start_control(binary, root, &keyspace, &tokens).await;
    configure(control, &tokens, &names.pool, 1, 600).await;
    let port = free_addr().port();
    let _hook = receiver(root, port, 0).await;
    let mut c = admin(control, &tokens).await;
    let tenants = c.list_tenants(ListTenantsRequest {}).await.expect("list");
    let mut acme = tenants.into_inner().tenants.remove(0);
    acme.webhooks = vec![Webhook {
        id: "crm".into(),
        url: format!("http://127.0.0.1:{port}/hook"),
        secret: SECRET.into(),
        ..Default::default()
    }];
    c.put_tenant(acme).await.expect("put the webhook");

    let follow = follow_toml(&[control], &tokens);
    let id = &names.group;
    let metrics = [free_addr(), free_addr()];
    let mut dispatchers = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        let text = dispatcher_toml(&kafka.brokers, &names.events, id, *m, &follow);
        let path = write(root, &format!("webhooks{i}.toml"), &text);
        dispatchers.push(spawn_role(binary, "webhooks", &path, &[], "warn"));
    }
    for m in metrics {
        wait_listening(m, "sluice webhooks", Duration::from_secs(60)).await;
    }

    // Events come in rounds until both dispatchers have posted some.
    let mut sent = 0;
    wait_for(
        "both dispatchers posting",
        Duration::from_secs(120),
        async || {
            append(&log, &names.events, sent, 20).await;
            sent += 20;
            delivered_by(metrics[0]).await > 0 && delivered_by(metrics[1]).await > 0
        },
    )
    .await;
    let before = ids(root, None).len();
    dispatchers[0].start_kill().expect("kill -9");
    let _ = dispatchers[0].wait().await;
    append(&log, &names.events, sent, 200).await;
    sent += 200;
    wait_for(
        "every event at the receiver after the kill",
        Duration::from_secs(180),
        async || ids(root, None).len() == sent,
    )
    .await;
    let expected: std::collections::BTreeSet<String> =
        (0..sent).map(|i| format!("ev-{i:05}")).collect();
    assert_eq!(ids(root, None), expected);
    eprintln!(
        "{sent} events: {before} posted before the kill, all {sent} after it, by the survivor; \
         survivor delivered {}",
        delivered_by(metrics[1]).await
    );
    // Stopped first: they would log the keyspace going away.
    drop((dispatchers, control_node));
    sluice_testkit::cql::drop_keyspace(&session, &keyspace).await;
}
