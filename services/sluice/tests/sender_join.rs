//! A second `sluice sender` process joins a pool while the first works
//! through a deep backlog on Kafka. The group moves half the partitions;
//! the first node must stop delivering their records the moment they are
//! revoked (the consumer's fence closes inside the rebalance callback), so
//! the only records both nodes deliver are the ones on the wire at that
//! instant. Counted by the ISP simulator: every message arrives, and
//! duplicates stay within the first node's open connections.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sluice_proto::v1::EventKind;
use sluice_testkit::leases::{leases_toml, spawn_sender};
use sluice_testkit::sender::*;

const MESSAGES: usize = 1600;
/// Connections per IP × IPs: the most deliveries one node has on the wire.
const ON_THE_WIRE: usize = 2 * 4;

const SCENARIO: &str = r#"
seed = 9

[[provider]]
name = "gmail"
style = "gmail"
listen = "127.0.0.2:0"
domains = ["gmail.test"]
[provider.limits]
connections_per_ip = 8
messages_per_minute = 6000
"#;

fn config(names: &Names, sim: &sluice_sim::SimHandle, brokers: &str, keyspace: &str) -> String {
    let domains: Vec<(&str, &[&str])> = vec![("gmail", &["gmail.test"])];
    let limits =
        "[shaping.limits.default]\nmessages_per_minute = 600\nburst = 5\nmax_connections = 2\n";
    format!(
        "{}\n{}\n{}\n{}\n{limits}\n{}",
        base_config(names, brokers),
        routes_toml(sim, &domains),
        site_rules_toml(sim),
        ips_toml(&names.pool, 4),
        leases_toml(keyspace, "3s", "1s", "1s"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_mid_backlog_causes_no_double_sends_beyond_the_wire() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let (session, keyspace) = sluice_testkit::cql::migrated_keyspace("sender_join").await;
    let names = Names::new();
    let sim = start_sim(SCENARIO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sender.toml");
    std::fs::write(&path, config(&names, &sim, &kafka.brokers, &keyspace)).expect("config");

    let envelopes: Vec<_> = (0..MESSAGES)
        .map(|i| envelope(&names.pool, i, &format!("user{i}@gmail.test"), 1024))
        .collect();
    let expected: HashSet<String> = envelopes.iter().map(|e| e.message_id.clone()).collect();
    // The whole backlog is there before the first node starts: it reads far
    // ahead of what its limits let it deliver.
    produce(&log, &names.outbound, &envelopes).await;

    let binary = env!("CARGO_BIN_EXE_sluice");
    let mut a = spawn_sender(binary, &path, "node-a");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.snapshot().messages.len() < MESSAGES / 5 {
        assert!(
            Instant::now() < deadline,
            "node-a did not deliver within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut b = spawn_sender(binary, &path, "node-b");

    let events = collect_fates(&log, &names.events, &expected, Duration::from_secs(150)).await;
    a.start_kill().expect("stop a");
    b.start_kill().expect("stop b");
    let _ = a.wait().await;
    let _ = b.wait().await;
    let report = sim.shutdown().await;
    sluice_testkit::cql::drop_keyspace(&session, &keyspace).await;

    let finals = finals(&events);
    let delivered = expected
        .iter()
        .filter(|id| {
            finals
                .get(*id)
                .is_some_and(|e| e.kind() == EventKind::Delivered)
        })
        .count();
    let by_node: HashSet<&str> = events
        .values()
        .flatten()
        .filter(|e| e.kind() == EventKind::Delivered)
        .map(|e| e.node.as_str())
        .collect();
    let twice = report.duplicates().len();
    println!(
        "{MESSAGES} messages, {} accepted by the simulator, {twice} delivered twice; nodes {by_node:?}",
        report.messages.len()
    );
    assert_eq!(delivered, MESSAGES, "every message delivered");
    assert_eq!(by_node.len(), 2, "both nodes delivered: {by_node:?}");
    assert!(
        twice <= ON_THE_WIRE,
        "{twice} messages delivered twice; at most the {ON_THE_WIRE} on the wire at the rebalance may be"
    );
    assert_eq!(report.total_violations(), 0, "limit violations:\n{report}");
}
