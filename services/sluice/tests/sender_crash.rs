//! Crash test of the real `sluice sender` binary on real Kafka: kill -9 in
//! the middle of a run, start it again, and prove that every message still
//! ends delivered or bounced. Reports how many were delivered twice (the
//! uncommitted in-flight window) and checks that the count stays within it.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice_proto::v1::EventKind;
use sluice_testkit::sender::*;
use tokio::process::{Child, Command};

const MESSAGES: usize = 3000;
const MAX_IN_FLIGHT: usize = 500;

const SCENARIO: &str = r#"
seed = 3

[[provider]]
name = "gmail"
style = "gmail"
listen = "127.0.0.2:0"
domains = ["gmail.test"]
unknown_users = ["nobody"]
[provider.limits]
connections_per_ip = 4
messages_per_minute = 3000

[[provider]]
name = "yahoo"
style = "yahoo"
listen = "127.0.0.3:0"
domains = ["yahoo.test"]
[provider.limits]
connections_per_ip = 4
messages_per_minute = 3000
"#;

fn spawn_sender(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sender", "--config"])
        .arg(config)
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start `sluice sender`")
}

async fn wait_accepted(sim: &sluice_sim::SimHandle, at_least: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while sim.snapshot().messages.len() < at_least {
        assert!(
            Instant::now() < deadline,
            "the sender delivered fewer than {at_least} messages in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_loses_nothing_and_duplicates_stay_in_the_window() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let names = Names::new();
    let sim = start_sim(SCENARIO).await;
    let domains: Vec<(&str, &[&str])> =
        vec![("gmail", &["gmail.test"]), ("yahoo", &["yahoo.test"])];
    let limits =
        "[shaping.limits.default]\nmessages_per_minute = 2600\nburst = 5\nmax_connections = 4\n";
    let config_text = format!(
        "{}\n{}\n{}\n{}\n{limits}",
        base_config(&names, &kafka.brokers).replace(
            "max_in_flight = 6000",
            &format!("max_in_flight = {MAX_IN_FLIGHT}")
        ),
        routes_toml(&sim, &domains),
        site_rules_toml(&sim),
        ips_toml(&names.pool, 2),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sender.toml");
    std::fs::write(&config, config_text).expect("write config");

    let envelopes: Vec<_> = (0..MESSAGES)
        .map(|i| {
            let rcpt = match i % 3 {
                0 => format!("user{i}@yahoo.test"),
                _ if i % 50 == 1 => "nobody@gmail.test".to_owned(),
                _ => format!("user{i}@gmail.test"),
            };
            envelope(&names.pool, i, &rcpt, 2048)
        })
        .collect();
    produce(&log, &names.outbound, &envelopes).await;
    let expected: HashSet<String> = envelopes.iter().map(|e| e.message_id.clone()).collect();

    let mut first = spawn_sender(&config);
    wait_accepted(&sim, MESSAGES / 3, Duration::from_secs(120)).await;
    first.start_kill().expect("kill -9");
    let status = first.wait().await.expect("reap");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL"
    );
    let at_kill = sim.snapshot().messages.len();

    let mut second = spawn_sender(&config);
    let events = collect_fates(&log, &names.events, &expected, Duration::from_secs(180)).await;
    let pid = second.id().expect("running") as i32;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(term.expect("kill -TERM").success());
    let status = tokio::time::timeout(Duration::from_secs(60), second.wait())
        .await
        .expect("SIGTERM drains and exits within a minute")
        .expect("reap");
    assert!(status.success(), "a drained sender exits 0, got {status}");
    let report = sim.shutdown().await;

    let finals = finals(&events);
    let missing = expected
        .iter()
        .filter(|id| !finals.contains_key(*id))
        .count();
    assert_eq!(
        missing, 0,
        "every message has a final event after the crash"
    );
    let delivered: HashSet<&String> = finals
        .iter()
        .filter(|(_, e)| e.kind() == EventKind::Delivered)
        .map(|(id, _)| id)
        .collect();
    let accepted: HashSet<String> = accepted_ids(&report).into_iter().collect();
    for id in &delivered {
        assert!(
            accepted.contains(*id),
            "{id} has a delivered event but the simulator never got it"
        );
    }
    let duplicates = report.duplicates().len();
    println!(
        "kill -9 after {at_kill} of {MESSAGES} accepted; after restart all {MESSAGES} accounted for; \
         {duplicates} delivered twice ({:.2} %), bound {MAX_IN_FLIGHT} (max_in_flight)",
        duplicates as f64 * 100.0 / MESSAGES as f64
    );
    assert!(
        duplicates <= MAX_IN_FLIGHT,
        "duplicates exceed the uncommitted window"
    );
    assert_eq!(
        report.total_violations(),
        0,
        "limits held across the restart:\n{report}"
    );
}
