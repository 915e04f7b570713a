//! Routing is off the consume path: a name server on loopback answers one
//! domain only after 20 s, and the mail of another domain, behind it on the
//! same partition, keeps flowing. Real DNS (the sender's hickory resolver
//! over UDP), real Kafka, the ISP simulator.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::Message;
use hickory_resolver::proto::rr::rdata::{A, MX};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use sluice_sender::SenderConfig;
use sluice_testkit::sender::*;

const SCENARIO: &str = "seed = 9\n[[provider]]\nname = \"fast\"\nlisten = \"127.0.0.2:0\"\ndomains = [\"fast.test\"]\n[provider.limits]\nconnections_per_ip = 8\nmessages_per_minute = 60000\n";

/// How long the name server keeps `slow.test` waiting.
const SLOW: Duration = Duration::from_secs(20);

fn answer(query: &Message) -> (Message, Duration) {
    let q = &query.queries[0];
    let mut reply = sluice_testkit::dns::reply_to(query);
    let name = q.name().to_ascii().to_lowercase();
    let slow = name.ends_with("slow.test.");
    match q.query_type() {
        RecordType::MX => {
            let host = Name::from_ascii(format!("mx.{name}")).expect("name");
            let mx = RData::MX(MX::new(10, host));
            reply.add_answer(Record::from_rdata(q.name().clone(), 60, mx));
        }
        RecordType::A => {
            let a = RData::A(A(Ipv4Addr::new(127, 0, 0, 2)));
            reply.add_answer(Record::from_rdata(q.name().clone(), 60, a));
        }
        _ => {}
    }
    (reply, if slow { SLOW } else { Duration::ZERO })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_domain_does_not_hold_up_other_domains() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let names = Names::new();
    let sim = start_sim(SCENARIO).await;
    let dns = sluice_testkit::dns::serve(answer).await;
    let port = sim.addr("fast").expect("bound").port();
    let config = format!(
        "{}\n{}\n{}\n[shaping.limits.default]\nmessages_per_minute = 60000\nburst = 100\nmax_connections = 8\n",
        with_dns(&base_config(&names, &kafka.brokers), dns)
            .replace("[smtp]\n", &format!("[smtp]\nport = {port}\n")),
        site_rules_toml(&sim),
        ips_toml(&names.pool, 1),
    );
    let config = SenderConfig::from_toml(&config).expect("config");
    // One partition: with routing on the consume path, every record behind
    // a slow domain's would wait for its lookup.
    sluice_log::create_topic(&kafka, &names.outbound, 1)
        .await
        .expect("topic");
    let sender = RunningSender::start(config, None, None).await;
    warm_up(&log, &names, "warm@fast.test").await;

    let mut records = Vec::new();
    for n in 1..=5 {
        records.push(envelope(&names.pool, n, &format!("u{n}@slow.test"), 512));
    }
    let mut fast = HashSet::new();
    for n in 6..106 {
        let e = envelope(&names.pool, n, &format!("u{n}@fast.test"), 512);
        fast.insert(e.message_id.clone());
        records.push(e);
    }
    let started = Instant::now();
    produce(&log, &names.outbound, &records).await;
    let events = collect_fates(&log, &names.events, &fast, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    sender.stop().await;
    let report = sim.shutdown().await;
    let delivered = finals(&events)
        .iter()
        .filter(|(id, e)| fast.contains(*id) && e.kind() == sluice_proto::v1::EventKind::Delivered)
        .count();
    assert_eq!(delivered, fast.len(), "every fast.test message delivered");
    assert!(
        elapsed < Duration::from_secs(10),
        "100 messages of fast.test took {elapsed:?} behind slow.test (its DNS answers after {SLOW:?})"
    );
    assert_eq!(report.total_violations(), 0, "{report}");
    println!("slow dns: 100 fast.test messages behind 5 slow.test ones delivered in {elapsed:?}");
}
