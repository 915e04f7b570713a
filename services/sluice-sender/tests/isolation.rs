//! A provider that defers everything must neither slow the others down nor
//! grow the sender's memory: its mail cycles through the delay tiers in Kafka
//! while the other providers' mail flows at their own limits.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_sender::SenderConfig;
use sluice_testkit::sender::*;

const FAST: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];
const PER_FAST: usize = 800;
const TO_BLACKHOLE: usize = 4000;
const MAX_IN_FLIGHT: usize = 2000;

fn scenario() -> String {
    let mut text = String::from("seed = 11\n");
    for (i, name) in FAST.iter().enumerate() {
        text.push_str(&format!(
            "[[provider]]\nname = \"{name}\"\nlisten = \"127.0.0.{}:0\"\ndomains = [\"{name}.test\"]\n[provider.limits]\nconnections_per_ip = 2\nmessages_per_minute = 1200\n",
            i + 2
        ));
    }
    text.push_str(
        "[[provider]]\nname = \"blackhole\"\nlisten = \"127.0.0.6:0\"\ndomains = [\"blackhole.test\"]\ntemp_failure_rate = 1.0\n[provider.limits]\nconnections_per_ip = 2\nmessages_per_minute = 100000\n",
    );
    text
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

struct Run {
    fast_elapsed: Duration,
    rss_samples_kib: Vec<u64>,
}

/// Sends `PER_FAST` messages to each fast provider (and, if `blackhole`,
/// `TO_BLACKHOLE` to the provider that defers everything); returns how long
/// the fast providers' mail took and the resident memory samples.
async fn run(blackhole: bool) -> Run {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let names = Names::new();
    let sim = start_sim(&scenario()).await;
    let mut domains: Vec<(&str, Vec<String>)> = FAST
        .iter()
        .map(|n| (*n, vec![format!("{n}.test")]))
        .collect();
    domains.push(("blackhole", vec!["blackhole.test".into()]));
    let borrowed: Vec<Vec<&str>> = domains
        .iter()
        .map(|(_, d)| d.iter().map(String::as_str).collect())
        .collect();
    let routes: Vec<(&str, &[&str])> = domains
        .iter()
        .zip(&borrowed)
        .map(|((n, _), d)| (*n, d.as_slice()))
        .collect();
    let config = format!(
        "{}\n{}\n{}\n{}\n[shaping.limits.default]\nmessages_per_minute = 1000\nburst = 5\nmax_connections = 2\nnew_connections_per_minute = 600\n",
        base_config(&names, &kafka.brokers)
            .replace(
                "max_in_flight = 6000",
                &format!("max_in_flight = {MAX_IN_FLIGHT}")
            )
            .replace("max_per_site = 1500", "max_per_site = 400"),
        routes_toml(&sim, &routes),
        site_rules_toml(&sim),
        ips_toml(&names.pool, 4),
    );
    let config = SenderConfig::from_toml(&config).expect("config");

    let mut envelopes = Vec::new();
    let mut fast_ids = HashSet::new();
    for name in FAST {
        for i in 0..PER_FAST {
            let e = envelope(
                &names.pool,
                envelopes.len(),
                &format!("user{i}@{name}.test"),
                4096,
            );
            fast_ids.insert(e.message_id.clone());
            envelopes.push(e);
        }
    }
    if blackhole {
        for i in 0..TO_BLACKHOLE {
            envelopes.push(envelope(
                &names.pool,
                envelopes.len(),
                &format!("user{i}@blackhole.test"),
                4096,
            ));
        }
    }
    // Interleave so the blackhole's mail sits between everyone else's.
    envelopes.sort_by_key(|e| hash(&e.message_id));
    produce(&log, &names.outbound, &envelopes).await;

    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            loop {
                samples.lock().expect("samples").push(resident_kib());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let started = Instant::now();
    let sender = RunningSender::start(config, None, None).await;
    let events = collect_fates(&log, &names.events, &fast_ids, Duration::from_secs(240)).await;
    let fast_elapsed = started.elapsed();
    if blackhole {
        // Keep the blackhole's mail cycling a while longer to watch memory.
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    sampler.abort();
    sender.stop().await;
    let report = sim.shutdown().await;

    let finals = finals(&events);
    let done = fast_ids
        .iter()
        .filter(|id| finals.contains_key(*id))
        .count();
    assert_eq!(
        done,
        fast_ids.len(),
        "every fast provider's message is final"
    );
    assert_eq!(report.total_violations(), 0, "{report}");
    let rss_samples_kib = samples.lock().expect("samples").clone();
    Run {
        fast_elapsed,
        rss_samples_kib,
    }
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_defers_everything_slows_no_one_and_memory_stays_flat() {
    let alone = run(false).await;
    let with_blackhole = run(true).await;
    let ratio = with_blackhole.fast_elapsed.as_secs_f64() / alone.fast_elapsed.as_secs_f64();
    let samples = &with_blackhole.rss_samples_kib;
    let half = samples.len() / 2;
    let first_peak = samples[..half].iter().max().copied().unwrap_or(0);
    let second_peak = samples[half..].iter().max().copied().unwrap_or(0);
    let peak = samples.iter().max().copied().unwrap_or(0);
    println!(
        "fast providers' {} messages: {:.1?} alone, {:.1?} beside a provider deferring all {TO_BLACKHOLE} of its messages (x{ratio:.2}); \
         resident memory of the test process: peak {} MiB, first-half peak {} MiB, second-half peak {} MiB ({} samples); \
         configured bound max_in_flight = {MAX_IN_FLIGHT} records of ~4 KiB",
        FAST.len() * PER_FAST,
        alone.fast_elapsed,
        with_blackhole.fast_elapsed,
        peak / 1024,
        first_peak / 1024,
        second_peak / 1024,
        samples.len()
    );
    assert!(
        ratio < 1.5,
        "the deferring provider slowed the others by x{ratio:.2}"
    );
    assert!(
        second_peak <= first_peak + 64 * 1024,
        "memory kept growing while the deferred mail cycled: {first_peak} KiB then {second_peak} KiB"
    );
    assert!(
        peak < 1024 * 1024,
        "resident memory {peak} KiB is far beyond the configured bound"
    );
}
