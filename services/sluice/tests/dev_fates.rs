//! The fate index under throttling (docs/fate-index.md): the real `sluice
//! dev` binary on its embedded log delivers a deep backlog through a binding
//! per-IP rate (and overflows to a delay tier), is killed with -9 twice and
//! restarted each time. Nothing accepted may be lost, and because a new
//! owner skips every record that already has a durable fate, only messages
//! in flight at a kill can reach the simulator twice: at most 30 per kill at
//! this rate (without the index, thousands). docs/fate-index.md.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_testkit::dev::{dev_config, send_request, start_dev};
use sluice_testkit::sender::start_sim;
use tokio::process::Child;

const SCENARIO: &str = r#"
seed = 12

[[provider]]
name = "slowmail"
listen = "127.0.0.2:0"
domains = ["slow.test"]
[provider.limits]
connections_per_ip = 4
messages_per_minute = 60000
"#;

/// Recipients per request and requests: 6,000 messages, all accepted before
/// the first kill.
const PER_REQUEST: usize = 20;
/// Kills during the run.
const KILLS: usize = 2;
/// Messages that can be in flight at a kill at 100/s: 0.3 s of traffic
/// (answered by the receiver, event and fate entry not yet fsync'd).
const IN_FLIGHT_AT_A_KILL: usize = 30;
const REQUESTS: usize = 300;

/// The sender's own per-IP rate binds (100 messages/s from one IP), so the
/// committed offset stays near the bottom of the backlog; the site queue is
/// small, so part of the backlog overflows to the first delay tier and is
/// read back from it.
const EXTRA: &str = r#"
[sender.queues]
max_in_flight = 1500
max_per_site = 300
overflow_delay = "5s"
[sender.shaping.limits.sites.slowmail]
messages_per_minute = 6000
burst = 10
max_connections = 2
"#;

/// Each recipient is its own message: copies per message, by recipient.
fn arrivals(report: &sluice_sim::Report) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for m in &report.messages {
        for r in &m.recipients {
            *seen.entry(r.clone()).or_default() += 1;
        }
    }
    seen
}

async fn wait_for_arrivals(sim: &sluice_sim::SimHandle, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while arrivals(&sim.snapshot()).len() < at_least {
        assert!(Instant::now() < deadline, "fewer than {at_least} arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn kill(mut dev: Child) {
    dev.start_kill().expect("kill -9");
    dev.wait().await.expect("reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_backlog_survives_two_kills_with_almost_no_duplicates() {
    let sim = start_sim(SCENARIO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    let config = dev_config(dir.path(), &sim, "slowmail", "slow.test", EXTRA);
    std::fs::write(&file, config).expect("write config");
    let binary = Path::new(env!("CARGO_BIN_EXE_sluice"));

    let first = start_dev(binary, &file).await;
    let mut client = IngestClient::connect(first.ingest)
        .await
        .expect("connect ingest");
    let mut accepted: HashSet<String> = HashSet::new();
    for batch in 0..REQUESTS {
        let to: Vec<String> = (0..PER_REQUEST)
            .map(|i| format!("f{batch}x{i}@slow.test"))
            .collect();
        let response = client
            .send(send_request("fates@sluice.test", &to, "fates"))
            .await
            .expect("accepted");
        accepted.extend(
            response
                .into_inner()
                .recipients
                .into_iter()
                .map(|r| r.address),
        );
    }
    let total = PER_REQUEST * REQUESTS;
    assert_eq!(accepted.len(), total);

    let mut dev = first.child;
    // At a quarter and at half of the arrivals.
    for kill_at in (1..=KILLS).map(|k| total * k / (2 * KILLS)) {
        wait_for_arrivals(&sim, kill_at).await;
        kill(dev).await;
        dev = start_dev(binary, &file).await.child;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen = arrivals(&sim.snapshot());
        let missing = accepted.iter().filter(|a| !seen.contains_key(*a)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} accepted messages never arrived after two kills"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let anything still queued twice show up before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    kill(dev).await;
    let report = sim.shutdown().await;
    let seen = arrivals(&report);
    let twice = seen.values().filter(|&&n| n > 1).count();
    let copies: usize = seen.values().map(|n| n - 1).sum();
    println!(
        "{total} accepted, 2 × kill -9, all delivered; {twice} messages arrived more than once ({copies} extra copies)"
    );
    assert!(
        seen.keys().all(|r| accepted.contains(r)),
        "unknown recipients"
    );
    assert_eq!(report.total_violations(), 0, "limit violations:\n{report}");
    assert!(
        twice <= KILLS * IN_FLIGHT_AT_A_KILL,
        "{twice} of {total} messages arrived more than once: more than the {IN_FLIGHT_AT_A_KILL} \
         per kill that can be in flight (on the wire or awaiting their fate's fsync)"
    );
}
