//! A throttled site's backlog waits for its turn instead of cycling: 300
//! messages for a site held to 2 a second, behind a ready queue of 10,
//! with delay tiers of 1 s, 5 s and 30 s. Overflowed messages used to come
//! back every second (26 re-writes each in 30 s when measured); parked by
//! the site's drain rate, each is re-written a few times (2.7 measured:
//! into a tier, then hops towards its slot) while the site keeps sending at
//! its limit. Mail that comes back from the longest hold and is parked
//! again may wait as far as the next longer tier. On a real broker; the sender runs in
//! this process.

use std::time::{Duration, Instant};

use sluice_sender::SenderConfig;
use sluice_testkit::sender::*;

const SCENARIO: &str = "seed = 9\n[[provider]]\nname = \"slow\"\nlisten = \"127.0.0.2:0\"\ndomains = [\"slow.test\"]\n[provider.limits]\nconnections_per_ip = 1\nmessages_per_minute = 120\n";
const BACKLOG: usize = 300;
const PER_SECOND: f64 = 2.0;
const WATCH: Duration = Duration::from_secs(30);

/// The sender for `names` and `sim` with `queues.max_overflow_hold` and
/// `retry.tiers` as given (`hold_tiers`).
fn held_config(
    names: &Names,
    brokers: &str,
    sim: &sluice_sim::SimHandle,
    (hold, tiers): (&str, &str),
) -> SenderConfig {
    let config = format!(
        "{}\n{}\n{}\n{}\n[shaping.limits.default]\nmessages_per_minute = 120\nburst = 1\nmax_connections = 1\n",
        base_config(names, brokers)
            .replace("max_per_site = 1500", "max_per_site = 10")
            .replace(
                "overflow_delay = \"1s\"",
                &format!("overflow_delay = \"1s\"\nmax_overflow_hold = \"{hold}\"")
            )
            .replace("tiers = [\"1s\", \"5s\"]", &format!("tiers = {tiers}")),
        routes_toml(sim, &[("slow", &["slow.test"])]),
        site_rules_toml(sim),
        ips_toml(&names.pool, 1),
    );
    SenderConfig::from_toml(&config).expect("config")
}

/// What one run saw.
struct Run {
    overflowed: u64,
    hops: u64,
    delivered: usize,
    watched: f64,
    report: sluice_sim::Report,
    /// The sender's metrics at the end.
    metrics: String,
    /// The first reading that showed the site waiting for its rate, or
    /// the last reading.
    waiting: String,
}

const WAIT_SHOWN: &str = "sluice_sender_site_waiting{site=\"slow\",reason=\"rate\"} 1";

impl Run {
    /// Every re-write: into a tier from the full queue, or on to the next tier.
    fn per_message(&self) -> f64 {
        (self.overflowed + self.hops) as f64 / BACKLOG as f64
    }
}

/// Puts the backlog on the outbound topic, runs a sender with
/// `hold_tiers` (see [`held_config`]) and watches it for `watch` from its
/// first delivery.
async fn run(hold_tiers: (&str, &str), watch: Duration) -> Run {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let names = Names::new();
    let sim = start_sim(SCENARIO).await;
    let config = held_config(&names, &kafka.brokers, &sim, hold_tiers);
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
    let mut waiting = String::new();
    while first.elapsed() < watch {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !waiting.contains(WAIT_SHOWN) {
            waiting = sender.telemetry.metrics.render();
        }
    }
    let delivered = sim.snapshot().messages.len();
    let stats = sender.telemetry.stats.lock().expect("stats").clone();
    let metrics = sender.telemetry.metrics.render();
    let watched = first.elapsed().as_secs_f64();
    sender.stop().await;
    let report = sim.shutdown().await;
    let run = Run {
        overflowed: stats.overflowed,
        hops: stats.hops,
        delivered,
        watched,
        report,
        metrics,
        waiting,
    };
    println!(
        "throttled backlog (hold {}, tiers {}): {BACKLOG} messages at {PER_SECOND}/s behind a queue of 10: \
         {} overflows, {} hops ({:.2} re-writes per message) and {delivered} deliveries in {watched:.1} s \
         (the limit allows {:.0})",
        hold_tiers.0,
        hold_tiers.1,
        run.overflowed,
        run.hops,
        run.per_message(),
        PER_SECOND * watched
    );
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_backlog_is_parked_by_the_sites_rate_not_cycled() {
    let run = run(("30s", "[\"1s\", \"5s\", \"30s\"]"), WATCH).await;
    let (delivered, watched) = (run.delivered, run.watched);
    let expected = PER_SECOND * watched;
    assert_eq!(run.report.total_violations(), 0, "{}", run.report);
    assert!(
        run.per_message() <= 5.0,
        "the backlog cycled: {:.2} re-writes per message in {watched:.1} s",
        run.per_message()
    );
    // Parked mail comes back before the queue runs dry: the site keeps
    // sending near its limit (80 %, for the connection set-ups).
    assert!(
        delivered as f64 >= expected * 0.8,
        "the site idled while its backlog was parked: {delivered} delivered in {watched:.1} s"
    );
    assert!(
        run.waiting.contains(WAIT_SHOWN),
        "the site's wait for its rate was never shown; last reading:\n{}",
        run.waiting
    );
    // One connection carries up to 100 messages: far fewer are opened than
    // messages delivered.
    let opened: u64 = run
        .metrics
        .lines()
        .filter(|l| {
            l.starts_with("sluice_sender_smtp_connections_opened_total{")
                && l.contains("site=\"slow\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        opened >= 1 && (opened as usize) * 4 <= delivered,
        "{opened} connections opened for {delivered} deliveries:\n{}",
        run.metrics
    );
}

/// Mail that comes back from the longest hold and overflows again may
/// take a slot as far as the next longer tier: with a 3 s hold and tiers of
/// 1 s, 3 s and 20 s, the backlog (150 s of work) is written about three
/// times in 15 s (1 s while the site's rate is unknown, then 3 s, then its
/// slot up to 20 s; 3.16 measured), where holding it 3 s at most writes it
/// 5.55 times, and the site keeps sending at its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_parked_again_may_wait_a_longer_tier() {
    let watch = Duration::from_secs(15);
    let run = run(("3s", "[\"1s\", \"3s\", \"20s\"]"), watch).await;
    let (delivered, watched) = (run.delivered, run.watched);
    assert_eq!(run.report.total_violations(), 0, "{}", run.report);
    assert!(
        run.per_message() < 4.0,
        "parked mail came back every hold: {:.2} re-writes per message in {watched:.1} s",
        run.per_message()
    );
    assert!(
        delivered as f64 >= PER_SECOND * watched * 0.8,
        "the site idled while its backlog was parked: {delivered} delivered in {watched:.1} s"
    );
}
