//! Scheduled mail waits in the delay tiers, not in front of later mail: a
//! message scheduled two hours ahead at the head of every outbound
//! partition does not hold up the mail behind it, and a message scheduled
//! twelve seconds ahead hops through the tiers and is delivered once due,
//! not before. On a real broker; the sender runs in this process.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sluice_log::{DEFAULT_PARTITIONS, partition_for};
use sluice_sender::SenderConfig;
use sluice_sender::fate::{millis, now, timestamp};
use sluice_shaping::Millis;
use sluice_testkit::sender::*;

const SCENARIO: &str = "seed = 5\n[[provider]]\nname = \"alpha\"\nlisten = \"127.0.0.2:0\"\ndomains = [\"alpha.test\"]\n[provider.limits]\nconnections_per_ip = 4\nmessages_per_minute = 6000\n";
const LATER: usize = 40;

fn scheduled(pool: &str, n: usize, at: Millis) -> sluice_proto::v1::Envelope {
    let mut e = envelope(pool, n, &format!("later{n}@alpha.test"), 1024);
    e.not_before = Some(timestamp(at));
    e
}

/// A sender of `names` delivering `alpha.test` to the simulator.
fn sender_config(names: &Names, brokers: &str, sim: &sluice_sim::SimHandle) -> SenderConfig {
    let config = format!(
        "{}\n{}\n{}\n{}\n[shaping.limits.default]\nmessages_per_minute = 3000\nburst = 20\nmax_connections = 4\n",
        base_config(names, brokers),
        routes_toml(sim, &[("alpha", &["alpha.test"])]),
        site_rules_toml(sim),
        ips_toml(&names.pool, 1),
    );
    SenderConfig::from_toml(&config).expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_mail_waits_in_the_tiers_not_in_front_of_later_mail() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let names = Names::new();
    let sim = start_sim(SCENARIO).await;
    let config = sender_config(&names, &kafka.brokers, &sim);

    // Two hours ahead, first on every partition of the outbound topic.
    let far = Millis(now().0 + 2 * 3_600_000);
    let mut envelopes = Vec::new();
    let mut heads = HashSet::new();
    while heads.len() < DEFAULT_PARTITIONS as usize {
        let e = scheduled(&names.pool, envelopes.len(), far);
        if heads.insert(partition_for(e.message_id.as_bytes(), DEFAULT_PARTITIONS)) {
            envelopes.push(e);
        }
        assert!(envelopes.len() < 1_000 || heads.len() == DEFAULT_PARTITIONS as usize);
    }
    let far_ids: HashSet<String> = envelopes.iter().map(|e| e.message_id.clone()).collect();
    let soon_at = Millis(now().0 + 12_000);
    let soon = scheduled(&names.pool, envelopes.len(), soon_at);
    let soon_id = soon.message_id.clone();
    envelopes.push(soon);
    let mut expected = HashSet::from([soon_id.clone()]);
    for i in 0..LATER {
        let e = envelope(
            &names.pool,
            envelopes.len(),
            &format!("now{i}@alpha.test"),
            1024,
        );
        expected.insert(e.message_id.clone());
        envelopes.push(e);
    }
    produce(&log, &names.outbound, &envelopes).await;

    let started = Instant::now();
    let sender = RunningSender::start(config, None, None).await;
    let events = collect_fates(&log, &names.events, &expected, Duration::from_secs(90)).await;
    let elapsed = started.elapsed();
    sender.stop().await;
    let report = sim.shutdown().await;

    let finals = finals(&events);
    let later_done = expected
        .iter()
        .filter(|id| **id != soon_id && finals.contains_key(*id))
        .count();
    assert_eq!(
        later_done, LATER,
        "the mail behind the scheduled messages left"
    );
    let soon_final = finals
        .get(&soon_id)
        .expect("the 12 s message was delivered");
    let delivered_at = millis(&soon_final.at).expect("event time");
    assert!(
        delivered_at >= soon_at,
        "delivered {} ms before it was due",
        soon_at.0 - delivered_at.0
    );
    assert!(
        delivered_at.0 <= soon_at.0 + 10_000,
        "delivered {} ms after it was due",
        delivered_at.0 - soon_at.0
    );
    for id in &far_ids {
        assert!(
            events.get(id).is_none_or(|evs| evs.is_empty()),
            "a message due in two hours has an event: {:?}",
            events.get(id)
        );
    }
    assert_eq!(report.total_violations(), 0, "{report}");
    println!(
        "scheduled: {LATER} later messages and the 12 s one final in {elapsed:?}; the 12 s one delivered {} ms after due",
        delivered_at.0 - soon_at.0
    );
}

/// A retry due in 20 s sits in the 5 s tier (the longest within its wait)
/// in front of an overflow due in 5 s on the same partition. Each is held
/// there at most the tier's delay, so the overflow leaves after about 5 s
/// instead of waiting behind the retry for 20 s; the retry hops on and is
/// delivered once due, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_retry_in_a_tier_does_not_hold_up_the_mail_behind_it() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let names = Names::new();
    let sim = start_sim(SCENARIO).await;
    let config = sender_config(&names, &kafka.brokers, &sim);
    let tier = config.delay_topic("5s");
    let sender = RunningSender::start(config, None, None).await;
    warm_up(&log, &names, "first@alpha.test").await;

    // Two records of one partition of the 5 s tier, written as the
    // dispatcher writes a retry and an overflow.
    let partition =
        |e: &sluice_proto::v1::Envelope| partition_for(e.message_id.as_bytes(), DEFAULT_PARTITIONS);
    let started = now();
    let mut retry = scheduled(&names.pool, 0, Millis(started.0 + 20_000));
    sluice_sender::fate::hold_in_tier(&mut retry, sluice_shaping::Span::secs(5), started);
    let mut n = 1;
    let overflow = loop {
        let mut e = scheduled(&names.pool, n, Millis(started.0 + 5_000));
        sluice_sender::fate::hold_in_tier(&mut e, sluice_shaping::Span::secs(5), started);
        if partition(&e) == partition(&retry) {
            break e;
        }
        n += 1;
    };
    let (retry_id, overflow_id) = (retry.message_id.clone(), overflow.message_id.clone());
    produce(&log, &tier, &[retry, overflow]).await;

    let expected = HashSet::from([retry_id.clone(), overflow_id.clone()]);
    let events = collect_fates(&log, &names.events, &expected, Duration::from_secs(60)).await;
    sender.stop().await;
    let report = sim.shutdown().await;
    let finals = finals(&events);
    let at = |id: &String| millis(&finals.get(id).expect("delivered").at).expect("time");
    let (overflow_at, retry_at) = (at(&overflow_id), at(&retry_id));
    assert!(
        overflow_at.0 >= started.0 + 5_000 && overflow_at.0 <= started.0 + 9_000,
        "the overflow was delivered {} ms after it was written (due at 5,000)",
        overflow_at.0 - started.0
    );
    assert!(
        retry_at.0 >= started.0 + 20_000 && retry_at.0 <= started.0 + 30_000,
        "the retry was delivered {} ms after it was written (due at 20,000)",
        retry_at.0 - started.0
    );
    assert_eq!(report.total_violations(), 0, "{report}");
    println!(
        "tier order: overflow delivered {} ms, retry {} ms after they were written (due 5,000 and 20,000)",
        overflow_at.0 - started.0,
        retry_at.0 - started.0
    );
}
