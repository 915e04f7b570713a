//! A throttled site's backlog waits for its turn instead of cycling: 300
//! messages for a site held to 2 a second, behind a ready queue of 10,
//! with delay tiers of 1 s, 5 s and 30 s. Overflowed messages used to come
//! back every second (26 re-writes each in 30 s when measured); parked by
//! the site's drain rate, each is re-written a few times (2.7 measured:
//! into a tier, then hops towards its slot) while the site keeps sending at
//! its limit. On a real broker; the sender runs in this process.

use std::time::{Duration, Instant};

use sluice_sender::SenderConfig;
use sluice_testkit::sender::*;

const SCENARIO: &str = "seed = 9\n[[provider]]\nname = \"slow\"\nlisten = \"127.0.0.2:0\"\ndomains = [\"slow.test\"]\n[provider.limits]\nconnections_per_ip = 1\nmessages_per_minute = 120\n";
const BACKLOG: usize = 300;
const PER_SECOND: f64 = 2.0;
const WATCH: Duration = Duration::from_secs(30);

fn sender_config(names: &Names, brokers: &str, sim: &sluice_sim::SimHandle) -> SenderConfig {
    let config = format!(
        "{}\n{}\n{}\n{}\n[shaping.limits.default]\nmessages_per_minute = 120\nburst = 1\nmax_connections = 1\n",
        base_config(names, brokers)
            .replace("max_per_site = 1500", "max_per_site = 10")
            .replace(
                "overflow_delay = \"1s\"",
                "overflow_delay = \"1s\"\nmax_overflow_hold = \"30s\""
            )
            .replace(
                "tiers = [\"1s\", \"5s\"]",
                "tiers = [\"1s\", \"5s\", \"30s\"]"
            ),
        routes_toml(sim, &[("slow", &["slow.test"])]),
        site_rules_toml(sim),
        ips_toml(&names.pool, 1),
    );
    SenderConfig::from_toml(&config).expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_backlog_is_parked_by_the_sites_rate_not_cycled() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let names = Names::new();
    let sim = start_sim(SCENARIO).await;
    let config = sender_config(&names, &kafka.brokers, &sim);
    let envelopes: Vec<_> = (0..BACKLOG)
        .map(|i| envelope(&names.pool, i, &format!("user{i}@slow.test"), 1024))
        .collect();
    produce(&log, &names.outbound, &envelopes).await;

    let sender = RunningSender::start(config, None, None).await;
    // The clock starts at the first delivery (the node joins its group first).
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.snapshot().messages.is_empty() {
        assert!(Instant::now() < deadline, "nothing delivered within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = Instant::now();
    // While messages are queued the site waits for its rate, and the gauge
    // (refreshed every 200 ms) says so at some reading.
    let wait_shown = "sluice_sender_site_waiting{site=\"slow\",reason=\"rate\"} 1";
    let mut waiting = String::new();
    while first.elapsed() < WATCH {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !waiting.contains(wait_shown) {
            waiting = sender.telemetry.metrics.render();
        }
    }
    let delivered = sim.snapshot().messages.len();
    let stats = sender.telemetry.stats.lock().expect("stats").clone();
    let metrics = sender.telemetry.metrics.render();
    // Every re-write: into a tier from the full queue, or on to the next tier.
    let rewrites = stats.overflowed + stats.hops;
    let watched = first.elapsed().as_secs_f64();
    sender.stop().await;
    let report = sim.shutdown().await;

    let per_message = rewrites as f64 / BACKLOG as f64;
    let expected = PER_SECOND * watched;
    println!(
        "throttled backlog: {BACKLOG} messages at {PER_SECOND}/s behind a queue of 10: {rewrites} re-writes \
         ({} overflows, {} hops; {per_message:.2} per message) and {delivered} deliveries in {watched:.1} s (the limit allows {expected:.0})",
        stats.overflowed, stats.hops
    );
    assert_eq!(report.total_violations(), 0, "{report}");
    assert!(
        per_message <= 5.0,
        "the backlog cycled: {rewrites} re-writes of {BACKLOG} messages in {watched:.1} s"
    );
    // Parked mail comes back before the queue runs dry: the site keeps
    // sending near its limit (80 %, for the connection set-ups).
    assert!(
        delivered as f64 >= expected * 0.8,
        "the site idled while its backlog was parked: {delivered} delivered in {watched:.1} s"
    );
    assert!(
        waiting.contains(wait_shown),
        "the site's wait for its rate was never shown; last reading:\n{waiting}"
    );
    // One connection carries up to 100 messages: far fewer are opened than
    // messages delivered.
    let opened: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("sluice_sender_smtp_connections_opened_total{")
                && l.contains("site=\"slow\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        opened >= 1 && (opened as usize) * 4 <= delivered,
        "{opened} connections opened for {delivered} deliveries:\n{metrics}"
    );
}
