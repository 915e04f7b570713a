//! Client proof against a real Kafka broker: an idempotent producer writes
//! 10,000 records, a consumer group reads them back with explicit offset
//! commits across a consumer restart, and not one record is lost or repeated.
//!
//! Needs a broker: `deploy/servers/kafka.sh start` (the test command does it).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_log::{KafkaConfig, create_topic, probe};

const RECORDS: usize = 10_000;
const PARTITIONS: i32 = 4;

async fn reachable_kafka() -> KafkaConfig {
    let config = KafkaConfig::from_env("sluice-log-test");
    if let Err(err) = probe(&config, Duration::from_secs(10)).await {
        panic!("this test needs a running Kafka broker. {err}");
    }
    config
}

async fn produce_all(config: &KafkaConfig, topic: &str) {
    let producer: FutureProducer = config.producer().create().expect("producer");
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(1000) {
        let sends = chunk.iter().map(|i| {
            let key = format!("msg-{i:05}");
            let payload = format!("payload of record {i}");
            let producer = &producer;
            async move {
                let record = FutureRecord::to(topic).key(&key).payload(&payload);
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(err, _)| err)
            }
        });
        try_join_all(sends).await.expect("every send acknowledged");
    }
}

/// Reads up to `limit` records, committing each batch synchronously, and
/// returns how often each key was seen.
async fn consume(
    config: &KafkaConfig,
    topic: &str,
    group: &str,
    limit: usize,
    seen: &mut HashMap<String, u32>,
) -> usize {
    let consumer: StreamConsumer = config.consumer(group).create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut read = 0;
    while read < limit {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(!remaining.is_zero(), "timed out after {read} records");
        let msg = match tokio::time::timeout(remaining.min(Duration::from_secs(5)), consumer.recv())
            .await
        {
            Ok(msg) => msg.expect("consume"),
            Err(_) if read > 0 && seen.len() == RECORDS => break,
            Err(_) => continue,
        };
        let key = String::from_utf8(msg.key().expect("key").to_vec()).expect("utf8 key");
        *seen.entry(key).or_default() += 1;
        consumer
            .store_offset_from_message(&msg)
            .expect("store offset");
        read += 1;
        if read % 500 == 0 {
            consumer
                .commit_consumer_state(CommitMode::Sync)
                .expect("commit");
        }
    }
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("final commit");
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_round_trip_without_loss_or_duplicates() {
    let config = reachable_kafka().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("sluice.test.roundtrip.{suffix}");
    let group = format!("sluice-test-{suffix}");
    create_topic(&config, &topic, PARTITIONS)
        .await
        .expect("create topic");

    produce_all(&config, &topic).await;

    let mut seen = HashMap::new();
    // First consumer stops part-way; its committed offsets hand over to the second.
    let first = consume(&config, &topic, &group, RECORDS / 3, &mut seen).await;
    let second = consume(&config, &topic, &group, RECORDS - first, &mut seen).await;

    assert_eq!(first + second, RECORDS, "records read in total");
    let missing: Vec<_> = (0..RECORDS)
        .map(|i| format!("msg-{i:05}"))
        .filter(|k| !seen.contains_key(k))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} records, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated records: {duplicated:?}");
}

#[tokio::test]
async fn unreachable_broker_names_the_server_and_how_to_start_it() {
    let config = KafkaConfig::new("127.0.0.1:1", "sluice-log-test");
    let err = probe(&config, Duration::from_secs(2))
        .await
        .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(
        text.contains("Kafka is not reachable at 127.0.0.1:1"),
        "{text}"
    );
    assert!(text.contains("deploy/servers/kafka.sh start"), "{text}");
}
