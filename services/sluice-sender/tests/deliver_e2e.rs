//! End to end on the ISP simulator: 20,000 messages to five simulated
//! providers with tight per-IP limits, from eight source IPs — once on real
//! Kafka and once on the embedded log, the same scenario. Every message must
//! end delivered or bounced exactly as the simulator's rules imply, and the
//! simulator must count zero limit violations.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use sluice_proto::v1::EventKind;
use sluice_sender::SenderConfig;
use sluice_testkit::sender::*;

const SCENARIO: &str = r#"
seed = 7

[[provider]]
name = "gmail"
style = "gmail"
listen = "127.0.0.2:0"
domains = ["gmail.test"]
unknown_users = ["nobody"]
temp_failure_rate = 0.01
[provider.limits]
connections_per_ip = 3
messages_per_connection = 50
messages_per_minute = 1200

[[provider]]
name = "yahoo"
style = "yahoo"
listen = "127.0.0.3:0"
domains = ["yahoo.test"]
mailbox_full_permanent = ["abandoned"]
temp_failure_rate = 0.01
[provider.limits]
connections_per_ip = 2
messages_per_connection = 20
messages_per_minute = 900

[[provider]]
name = "outlook"
style = "outlook"
listen = "127.0.0.4:0"
domains = ["outlook.test"]
temp_failure_rate = 0.01
[provider.limits]
connections_per_ip = 2
messages_per_connection = 10
messages_per_minute = 900

[[provider]]
name = "small-a"
listen = "127.0.0.5:0"
domains = ["small-a.test"]
greylist_secs = 2
[provider.limits]
connections_per_ip = 1
messages_per_minute = 600

[[provider]]
name = "small-b"
listen = "127.0.0.6:0"
domains = ["small-b.test"]
starttls = false
[provider.limits]
connections_per_ip = 1
messages_per_connection = 5
messages_per_minute = 600
"#;

/// Per provider: (name, domain, messages, bouncing local part, sim limits
/// (connections, messages per connection, messages per minute)).
type Plan = (
    &'static str,
    &'static str,
    usize,
    &'static str,
    (u32, u32, u32),
);

const PLAN: [Plan; 5] = [
    ("gmail", "gmail.test", 6000, "nobody", (3, 50, 1200)),
    ("yahoo", "yahoo.test", 5000, "abandoned", (2, 20, 900)),
    ("outlook", "outlook.test", 5000, "", (2, 10, 900)),
    ("small-a", "small-a.test", 500, "", (1, 1000, 600)),
    ("small-b", "small-b.test", 3500, "", (1, 5, 600)),
];

/// Prints the sender's counters every five seconds while the test runs.
fn progress(
    stats: std::sync::Arc<std::sync::Mutex<sluice_sender::Stats>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let s = stats.lock().expect("stats").clone();
            println!("{:>5.0?} {s:?}", started.elapsed());
        }
    })
}

/// Sender limits a little inside the simulator's: rate at 90 % minus the burst.
fn limits_toml() -> String {
    let mut out = String::new();
    for (name, _, _, _, (conns, per_conn, per_min)) in PLAN {
        let burst = 5;
        let rate = per_min * 9 / 10 - burst;
        out.push_str(&format!(
            "[shaping.limits.sites.\"{name}\"]\nmessages_per_minute = {rate}\nburst = {burst}\nmax_connections = {conns}\nmessages_per_connection = {per_conn}\nnew_connections_per_minute = 600\n"
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_twenty_thousand_messages_within_every_limit_and_none_lost() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    twenty_thousand(log, &kafka.brokers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_log_twenty_thousand_messages_within_every_limit_and_none_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = sluice_log::EmbeddedLog::open(dir.path()).expect("embedded log");
    // The brokers setting is unused on the embedded log.
    twenty_thousand(log.into(), "unused:9092").await;
}

async fn twenty_thousand(log: sluice_log::Log, brokers: &str) {
    let names = Names::new();
    let sim = start_sim(SCENARIO).await;
    let domains: Vec<(&str, &[&str])> = vec![
        ("gmail", &["gmail.test"]),
        ("yahoo", &["yahoo.test"]),
        ("outlook", &["outlook.test"]),
        ("small-a", &["small-a.test"]),
        ("small-b", &["small-b.test"]),
    ];
    let config = format!(
        "{}\n{}\n{}\n{}\n{}",
        base_config(&names, brokers),
        routes_toml(&sim, &domains),
        site_rules_toml(&sim),
        ips_toml(&names.pool, 8),
        limits_toml(),
    );
    let config = SenderConfig::from_toml(&config).expect("sender config");

    let mut envelopes = Vec::new();
    let mut must_bounce = BTreeSet::new();
    for (_, domain, count, bouncer, _) in PLAN {
        for i in 0..count {
            let local = if !bouncer.is_empty() && i % 100 == 7 {
                bouncer.to_owned()
            } else {
                format!("user{i}")
            };
            let e = envelope(
                &names.pool,
                envelopes.len(),
                &format!("{local}@{domain}"),
                1024,
            );
            if !bouncer.is_empty() && local == bouncer {
                must_bounce.insert(e.message_id.clone());
            }
            envelopes.push(e);
        }
    }
    produce(&log, &names.outbound, &envelopes).await;
    let expected: HashSet<String> = envelopes.iter().map(|e| e.message_id.clone()).collect();

    let started = Instant::now();
    let sender = RunningSender::start(config, Some(log.clone()), None).await;
    let progress = progress(sender.telemetry.stats.clone());
    // Usually done in about two minutes; the deadline leaves room for a
    // loaded machine (one CI run took over three) and costs nothing when
    // every fate arrives sooner.
    let events = collect_fates(&log, &names.events, &expected, Duration::from_secs(360)).await;
    let elapsed = started.elapsed();
    progress.abort();
    let stats = sender.stop().await;
    let report = sim.shutdown().await;

    let finals = finals(&events);
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !finals.contains_key(*id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{} messages have no final event, e.g. {missing:?} (stats {stats:?})",
        expected.len() - finals.len()
    );
    let bounced: BTreeSet<String> = finals
        .iter()
        .filter(|(_, e)| e.kind() == EventKind::Bounced)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        bounced, must_bounce,
        "exactly the unknown and abandoned mailboxes bounce"
    );
    let delivered: HashSet<String> = finals
        .iter()
        .filter(|(_, e)| e.kind() == EventKind::Delivered)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        delivered.len() + bounced.len(),
        expected.len(),
        "nothing expired"
    );
    let accepted: HashSet<String> = accepted_ids(&report).into_iter().collect();
    assert_eq!(
        accepted, delivered,
        "the simulator holds exactly the delivered messages"
    );
    let duplicates = report.duplicates();
    assert_eq!(report.total_violations(), 0, "limit violations:\n{report}");
    let deferred = events
        .values()
        .flatten()
        .filter(|e| e.kind() == EventKind::Deferred)
        .count();
    let mut deferred_by_site = std::collections::BTreeMap::<String, usize>::new();
    for e in events
        .values()
        .flatten()
        .filter(|e| e.kind() == EventKind::Deferred)
    {
        *deferred_by_site.entry(e.site.clone()).or_default() += 1;
    }
    println!("deferred attempts by site: {deferred_by_site:?}");
    println!(
        "20,000 messages in {elapsed:.1?}: delivered {}, bounced {}, deferred attempts {deferred}, duplicates {}, violations 0",
        delivered.len(),
        bounced.len(),
        duplicates.len()
    );
    assert!(
        duplicates.is_empty(),
        "no crash, so no duplicates: {duplicates:?}"
    );
    assert!(
        deferred > 0,
        "greylisting and random 4xx must have caused retries"
    );
}
