//! Two real `sluice sender` processes share one pool of four source IPs
//! through leases in Cassandra, against the ISP simulator and Kafka. The
//! backlog is produced before the first node starts; the second joins while
//! the first works through it (no double sends beyond what is on the wire).
//! From
//! the simulator's record (source IP and time of every accepted message)
//! joined with the delivered events (node, lease epoch): no IP is used by
//! two nodes at overlapping times. Then one node is killed with -9: the
//! other takes its IPs over within about the lease TTL, and every message
//! is delivered.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_proto::v1::EventKind;
use sluice_testkit::leases::{leases_toml, overlaps, spans, spawn_sender, takeovers, uses};
use sluice_testkit::sender::*;

const MESSAGES: usize = 1600;
/// Connections per IP × IPs: the most deliveries one node has on the wire.
const ON_THE_WIRE: usize = 2 * 4;
/// Lease TTL (s), renewal interval and margin of both nodes.
const TTL_S: u64 = 3;

const SCENARIO: &str = r#"
seed = 5

[[provider]]
name = "gmail"
style = "gmail"
listen = "127.0.0.2:0"
domains = ["gmail.test"]
[provider.limits]
connections_per_ip = 8
messages_per_minute = 6000
"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn wait_accepted(sim: &sluice_sim::SimHandle, at_least: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while sim.snapshot().messages.len() < at_least {
        assert!(
            Instant::now() < deadline,
            "fewer than {at_least} messages delivered in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config(names: &Names, sim: &sluice_sim::SimHandle, brokers: &str, keyspace: &str) -> String {
    let domains: Vec<(&str, &[&str])> = vec![("gmail", &["gmail.test"])];
    // 10 messages per second per IP: the run lasts long enough to see
    // the pool split, the kill and the take-over.
    let limits =
        "[shaping.limits.default]\nmessages_per_minute = 600\nburst = 5\nmax_connections = 2\n";
    format!(
        "{}\n{}\n{}\n{}\n{limits}\n{}",
        base_config(names, brokers),
        routes_toml(sim, &domains),
        site_rules_toml(sim),
        ips_toml(&names.pool, 4),
        leases_toml(keyspace, &format!("{TTL_S}s"), "1s", "1s"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_share_an_ip_and_a_killed_nodes_ips_are_taken_over() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let (session, keyspace) = sluice_testkit::cql::migrated_keyspace("leases_e2e").await;
    let names = Names::new();
    let sim = start_sim(SCENARIO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sender.toml");
    std::fs::write(&path, config(&names, &sim, &kafka.brokers, &keyspace)).expect("config");

    let envelopes: Vec<_> = (0..MESSAGES)
        .map(|i| envelope(&names.pool, i, &format!("user{i}@gmail.test"), 1024))
        .collect();
    let expected: HashSet<String> = envelopes.iter().map(|e| e.message_id.clone()).collect();

    // The whole backlog is there before a starts: a takes the whole pool
    // and reads far ahead of its limits. b joins after a fifth was accepted:
    // a hands two IPs over and Kafka moves half the partitions, so a must
    // stop delivering what it read of them (the revocation fence). Then a is
    // killed with -9 and b takes its IPs over.
    produce(&log, &names.outbound, &envelopes).await;
    let binary = env!("CARGO_BIN_EXE_sluice");
    let mut a = spawn_sender(binary, &path, "node-a");
    wait_accepted(&sim, MESSAGES / 5, Duration::from_secs(60)).await;
    let mut b = spawn_sender(binary, &path, "node-b");
    wait_accepted(&sim, MESSAGES / 2, Duration::from_secs(90)).await;
    a.start_kill().expect("kill -9");
    let killed_at = now_ms();
    a.wait().await.expect("reap");

    let events = collect_fates(&log, &names.events, &expected, Duration::from_secs(90)).await;
    b.start_kill().expect("stop b");
    b.wait().await.expect("reap");
    let report = sim.shutdown().await;
    sluice_testkit::cql::drop_keyspace(&session, &keyspace).await;

    let finals = finals(&events);
    let delivered = finals
        .values()
        .filter(|e| e.kind() == EventKind::Delivered)
        .count();
    let unfinished: Vec<_> = expected
        .iter()
        .filter(|id| {
            finals
                .get(*id)
                .is_none_or(|e| e.kind() != EventKind::Delivered)
        })
        .take(5)
        .map(|id| {
            (
                id,
                events
                    .get(id)
                    .map(|evs| evs.iter().map(|e| e.kind()).collect::<Vec<_>>()),
            )
        })
        .collect();
    let missing = expected
        .iter()
        .filter(|id| !events.contains_key(*id))
        .count();
    assert_eq!(
        delivered, MESSAGES,
        "every message delivered after the kill; {missing} without any event; some not delivered: {unfinished:?}"
    );

    let uses = uses(&report, &events);
    for ((ip, node, epoch), (first, last)) in spans(&uses) {
        println!(
            "{ip} {node} epoch {epoch}: {first}..{last} ({} ms)",
            last - first
        );
    }
    let found = overlaps(&uses);
    assert!(
        found.is_empty(),
        "IPs used by two nodes at once: {found:#?}"
    );
    assert!(
        uses.iter().all(|u| !u.node.is_empty() && u.epoch > 0),
        "every delivered event names its node and lease epoch"
    );
    let nodes: HashSet<&str> = uses.iter().map(|u| u.node.as_str()).collect();
    assert_eq!(nodes.len(), 2, "both nodes delivered: {nodes:?}");

    let twice = report.duplicates().len();
    assert!(
        twice <= 2 * ON_THE_WIRE,
        "{twice} messages delivered twice; only those on the wire at the rebalance and at the kill may be (at most {ON_THE_WIRE} each)"
    );
    let taken = takeovers(&uses, "node-a", killed_at);
    println!(
        "{MESSAGES} messages, {} accepted by the simulator ({} joined with their event), \
         {} delivered twice, 0 overlaps; take-over after kill -9 (ms): {taken:?}",
        report.messages.len(),
        uses.len(),
        report.duplicates().len(),
    );
    assert!(!taken.is_empty(), "node-a held IPs when it was killed");
    let bound = (TTL_S + 3) * 1000;
    for (ip, ms) in &taken {
        assert!(
            *ms <= bound,
            "{ip} taken over after {ms} ms (bound {bound} ms)"
        );
    }
}
