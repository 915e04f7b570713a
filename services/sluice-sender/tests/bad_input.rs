//! Bad input on the outbound topic and bad peers on the network: each gets a
//! clear event, none crashes the sender or stalls the partition. All records
//! share one partition, and a good message produced last must still arrive.
//! Domains are resolved over real DNS (a small name server on loopback that
//! the sender's hickory resolver queries over UDP).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, MX};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_proto::v1::{Envelope, EventKind};
use sluice_sender::SenderConfig;
use sluice_testkit::sender::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const SCENARIO: &str = r#"
[[provider]]
name = "good"
listen = "127.0.0.2:0"
domains = ["good.test"]

[[provider]]
name = "plain"
listen = "127.0.0.3:0"
domains = ["plain.test"]
starttls = false
"#;

/// The zone the test name server answers for.
fn answer(query: &Message) -> Message {
    let q = &query.queries[0];
    let mut reply = sluice_testkit::dns::reply_to(query);
    let name = q.name().to_ascii().to_lowercase();
    let mx = |pref: u16, host: &str| {
        let exchange = if host == "." {
            Name::root()
        } else {
            Name::from_ascii(host).expect("name")
        };
        Record::from_rdata(q.name().clone(), 60, RData::MX(MX::new(pref, exchange)))
    };
    let a = |ip: [u8; 4]| Record::from_rdata(q.name().clone(), 60, RData::A(A(Ipv4Addr::from(ip))));
    match (name.as_str(), q.query_type()) {
        ("nullmx.test.", RecordType::MX) => {
            reply.add_answer(mx(0, "."));
        }
        ("reset.test.", RecordType::MX) => {
            reply.add_answer(mx(10, "mx.reset.test."));
        }
        ("mx.reset.test.", RecordType::A) => {
            reply.add_answer(a([127, 0, 0, 7]));
        }
        ("garbage.test.", RecordType::MX) => {
            reply.add_answer(mx(10, "mx.garbage.test."));
        }
        ("mx.garbage.test.", RecordType::A) => {
            reply.add_answer(a([127, 0, 0, 8]));
        }
        (n, _) if n.starts_with("nxdomain.") => {
            reply.metadata.response_code = ResponseCode::NXDomain
        }
        _ => {} // NOERROR, no records: e.g. nomx.test has neither MX nor A.
    }
    reply
}

/// A host that accepts and closes at once (127.0.0.7) and one that answers
/// HTTP instead of SMTP (127.0.0.8), on one port.
async fn bad_peers() -> u16 {
    loop {
        let reset = TcpListener::bind("127.0.0.7:0")
            .await
            .expect("bind reset peer");
        let port = reset.local_addr().expect("addr").port();
        let Ok(garbage) = TcpListener::bind(("127.0.0.8", port)).await else {
            continue;
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = reset.accept().await {
                drop(stream); // closes before any banner
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = garbage.accept().await {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        return port;
    }
}

/// `GET <path>` over a plain TCP connection.
async fn scrape(addr: SocketAddr, path: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to metrics");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("send request");
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .await
        .expect("read response");
    body
}

/// `GET /metrics` until the exposition contains `wanted` (30 s at most).
async fn scrape_until(addr: SocketAddr, wanted: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let scraped = scrape(addr, "/metrics").await;
        if scraped.contains(wanted) || tokio::time::Instant::now() >= deadline {
            return scraped;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_a_clear_event_and_the_partition_keeps_moving() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let names = Names::new();
    let sim = start_sim(SCENARIO).await;
    let dns = sluice_testkit::dns::serve(|q| (answer(q), Duration::ZERO)).await;
    let port = bad_peers().await;
    let config = format!(
        "{}\n{}\n{}\n{}",
        with_dns(&base_config(&names, &kafka.brokers), dns).replace(
            "[smtp]\n",
            &format!("[smtp]\nport = {port}\nrequire_tls_sites = [\"plain\"]\n")
        ),
        routes_toml(
            &sim,
            &[("good", &["good.test"]), ("plain", &["plain.test"])]
        ),
        site_rules_toml(&sim),
        ips_toml(&names.pool, 1),
    );
    let config = SenderConfig::from_toml(&config).expect("config");

    // One partition, so a stuck record would stall everything behind it.
    sluice_log::create_topic(&kafka, &names.outbound, 1)
        .await
        .expect("topic");
    let env = |n: usize, rcpt: &str| envelope(&names.pool, n, rcpt, 512);
    let mut wrong_pool = env(1, "user@good.test");
    wrong_pool.pool = "nonexistent".into();
    let cases: Vec<(Envelope, EventKind, &str)> = vec![
        (wrong_pool, EventKind::Bounced, "5.3.5"),
        (env(2, "no-at-sign"), EventKind::Bounced, "5.1.3"),
        (env(3, "user@nullmx.test"), EventKind::Bounced, "5.1.10"),
        (env(4, "user@nxdomain.test"), EventKind::Bounced, "5.1.2"),
        (env(5, "user@nomx.test"), EventKind::Bounced, "5.1.2"),
        (env(6, "user@reset.test"), EventKind::Deferred, "4.4.1"),
        (env(7, "user@garbage.test"), EventKind::Deferred, "4.5.0"),
        (env(9, "user@plain.test"), EventKind::Deferred, "4.7.10"),
    ];
    let producer: FutureProducer = kafka.producer().create().expect("producer");
    let garbage = FutureRecord::to(&names.outbound)
        .key("junk")
        .payload(&b"\xff\xff\xffnot protobuf"[..]);
    producer
        .send(garbage, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce junk");
    let mut all: Vec<Envelope> = cases.iter().map(|(e, _, _)| e.clone()).collect();
    let good = env(8, "user@good.test");
    all.push(good.clone());
    produce(&log, &names.outbound, &all).await;

    let metrics_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind metrics");
    let metrics_addr = metrics_listener.local_addr().expect("addr");
    let sender = RunningSender::start(config, None, Some(metrics_listener)).await;
    let want: Vec<String> = all.iter().map(|e| e.message_id.clone()).collect();
    let events = collect_events(&log, &names.events, Duration::from_secs(60), |events| {
        want.iter().all(|id| events.contains_key(id))
            && events.keys().any(|k| k.starts_with("kafka:"))
    })
    .await;
    // Every record settles and is committed: the lag of the only
    // partition (measured every 5 s) comes down to 0.
    let settled = format!(
        "sluice_sender_consumer_lag_records{{topic=\"{}\",partition=\"0\"}} 0\n",
        names.outbound
    );
    let scraped = scrape_until(metrics_addr, &settled).await;
    let readiness = scrape(metrics_addr, "/readyz").await;
    sender.stop().await;
    sim.shutdown().await;
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    assert!(
        scraped.contains(&settled),
        "{settled} missing from\n{scraped}"
    );
    assert!(
        readiness.starts_with("HTTP/1.1 200") && readiness.ends_with("ready\n"),
        "{readiness}"
    );
    let delivered = format!(
        "sluice_sender_outcomes_total{{kind=\"delivered\",site=\"good\",pool=\"{}\",source_ip=\"",
        names.pool
    );
    assert!(
        scraped
            .lines()
            .any(|l| l.starts_with(&delivered) && l.ends_with("\"} 1")),
        "{scraped}"
    );
    assert!(
        scraped.contains("# HELP sluice_sender_records_in_flight"),
        "{scraped}"
    );
    assert!(
        scraped.contains("sluice_sender_smtp_connections{source_ip=\"")
            && scraped.contains("state=\"idle\"}"),
        "{scraped}"
    );

    let first = |id: &str| events.get(id).and_then(|v| v.first()).cloned();
    for (envelope, kind, code) in &cases {
        let event = first(&envelope.message_id)
            .unwrap_or_else(|| panic!("no event for {}", envelope.recipient));
        let reply = event.reply.clone().expect("event carries the reply");
        assert_eq!(event.kind(), *kind, "{}: {reply:?}", envelope.recipient);
        assert_eq!(
            reply.enhanced_code, *code,
            "{}: {reply:?}",
            envelope.recipient
        );
        assert!(!reply.text.is_empty(), "the reply says why");
    }
    let junk = events
        .iter()
        .find(|(k, _)| k.starts_with("kafka:"))
        .map(|(_, v)| v[0].clone())
        .expect("an event for the malformed record");
    assert_eq!(junk.kind(), EventKind::Bounced);
    assert!(
        junk.reply
            .expect("reply")
            .text
            .contains("malformed envelope")
    );
    let good_event = first(&good.message_id).expect("the good message, produced last, got through");
    assert_eq!(good_event.kind(), EventKind::Delivered);
}
