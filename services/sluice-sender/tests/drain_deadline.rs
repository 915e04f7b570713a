//! The drain deadline: a sender stopped while a delivery hangs (the receiver
//! never answers the message content) returns once `drain_timeout` has
//! passed instead of waiting for the SMTP timeout, commits nothing it has not
//! settled, and the next node of the group delivers every message.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sluice_node::Span;
use sluice_sender::SenderConfig;
use sluice_sim::SimHandle;
use sluice_testkit::sender::*;

const MESSAGES: usize = 3;

const SCENARIO: &str = r#"
[[provider]]
name = "stuck"
listen = "127.0.0.2:0"
domains = ["mail.test"]
data_reply_delay_ms = 300000

[[provider]]
name = "fast"
listen = "127.0.0.3:0"
domains = ["mail.test"]
"#;

/// Mail for `mail.test` goes to `provider`.
fn config(names: &Names, brokers: &str, sim: &SimHandle, provider: &str) -> SenderConfig {
    let text = format!(
        "{}\n{}\n{}\n{}\n",
        base_config(names, brokers),
        routes_toml(sim, &[(provider, &["mail.test"])]),
        site_rules_toml(sim),
        ips_toml(&names.pool, 1),
    );
    let mut config = SenderConfig::from_toml(&text).expect("config");
    // Far longer than the drain deadline: only the deadline can end the drain.
    config.smtp.data_timeout = Span::secs(120);
    config.drain_timeout = Span::secs(1);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_delivery_is_abandoned_at_the_deadline_and_delivered_by_the_next_node() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let names = Names::new();
    let sim = start_sim(SCENARIO).await;
    let envelopes: Vec<_> = (0..MESSAGES)
        .map(|i| envelope(&names.pool, i, &format!("user{i}@mail.test"), 512))
        .collect();
    produce(&log, &names.outbound, &envelopes).await;

    let first =
        RunningSender::start(config(&names, &kafka.brokers, &sim, "stuck"), None, None).await;
    wait_for_content(&first).await;
    let stopping = Instant::now();
    let stats = first.stop().await;
    let drained_in = stopping.elapsed();
    assert!(
        drained_in < Duration::from_secs(10),
        "the drain took {drained_in:?}; the deadline is 1 s and the SMTP data timeout 120 s"
    );
    assert_eq!(
        stats.delivered + stats.deferred + stats.bounced,
        0,
        "nothing was settled: {stats:?}"
    );

    let second =
        RunningSender::start(config(&names, &kafka.brokers, &sim, "fast"), None, None).await;
    let want: HashSet<String> = envelopes.iter().map(|e| e.message_id.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let arrived: HashSet<String> = accepted_ids(&sim.snapshot()).into_iter().collect();
        if want.is_subset(&arrived) {
            break;
        }
        let stats = second.telemetry.stats.lock().expect("stats").clone();
        assert!(
            Instant::now() < deadline,
            "the next node did not deliver every message: {arrived:?} of {want:?}; {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop().await;
    sim.shutdown().await;
    println!("drain abandoned after {drained_in:?}; the next node delivered all {MESSAGES}");
}

/// Waits until the stuck provider holds a message content it will not answer.
async fn wait_for_content(sender: &RunningSender) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sender.telemetry.stats.lock().expect("stats").in_delivery == 0 {
        let stats = sender.telemetry.stats.lock().expect("stats").clone();
        assert!(
            Instant::now() < deadline,
            "no delivery started within 30 s: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The content is on the wire a moment after the delivery starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
}
