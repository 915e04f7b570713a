//! Publishes envelopes and events with the idempotent `acks=all` producer
//! and reports which message ids Kafka acknowledged.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::IngestError;
use crate::config::IngestConfig;

/// One record to publish.
pub struct OutRecord {
    pub topic: String,
    /// The message id: record key, and what the client is told is durable.
    pub key: String,
    pub payload: Vec<u8>,
    /// True when this record's acknowledgement makes `key` durable for the
    /// client (the envelope, or the suppressed event of a suppressed recipient).
    pub marks_durable: bool,
}

/// The Kafka producer of an ingest node.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    max_queued: usize,
    outbound_prefix: String,
    events_topic: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("events_topic", &self.events_topic)
            .finish()
    }
}

impl Publisher {
    /// Creates the producer (connects lazily).
    pub fn new(config: &IngestConfig) -> Result<Self, IngestError> {
        let mut client = config.kafka_client().producer();
        client
            .set(
                "message.timeout.ms",
                config.kafka.publish_timeout_ms.to_string(),
            )
            .set(
                "queue.buffering.max.messages",
                config.kafka.max_queued_records.to_string(),
            )
            .set("message.max.bytes", "33554432");
        let producer: FutureProducer = client
            .create()
            .map_err(|err| IngestError::Config(format!("kafka producer: {err}")))?;
        Ok(Self {
            producer,
            max_queued: config.kafka.max_queued_records as usize,
            outbound_prefix: config.kafka.outbound_topic_prefix.clone(),
            events_topic: config.kafka.events_topic.clone(),
        })
    }

    /// Outbound topic of `pool`.
    pub fn outbound_topic(&self, pool: &str) -> String {
        format!("{}{pool}", self.outbound_prefix)
    }

    /// The events topic.
    pub fn events_topic(&self) -> &str {
        &self.events_topic
    }

    /// Publishes every record and waits for Kafka's acknowledgements. On
    /// failure the error lists the message ids that are durable anyway.
    pub async fn publish(&self, records: Vec<OutRecord>) -> Result<(), IngestError> {
        let queued = self.producer.in_flight_count().max(0) as usize;
        if queued + records.len() > self.max_queued {
            return Err(IngestError::Backpressure(format!(
                "{queued} records await Kafka's acknowledgement; the producer holds at most {}",
                self.max_queued
            )));
        }
        let mut pending: Vec<(DeliveryFuture, Option<String>)> = Vec::new();
        let mut enqueue_error = None;
        for record in &records {
            let future = FutureRecord::to(&record.topic)
                .key(&record.key)
                .payload(&record.payload);
            match self.producer.send_result(future) {
                Ok(delivery) => {
                    pending.push((delivery, record.marks_durable.then(|| record.key.clone())))
                }
                Err((err, _)) => {
                    enqueue_error = Some(err);
                    break;
                }
            }
        }
        let (futures, keys): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
        let results = join_all(futures).await;
        let mut durable = Vec::new();
        let mut failure = enqueue_error.map(|e| describe(&e));
        for (result, key) in results.into_iter().zip(keys) {
            match result {
                Ok(Ok(_)) => durable.extend(key),
                Ok(Err((err, _))) => failure = Some(describe(&err)),
                Err(_) => failure = Some(Failure::Other("producer dropped the record".into())),
            }
        }
        match failure {
            None => Ok(()),
            Some(Failure::QueueFull) if durable.is_empty() => Err(IngestError::Backpressure(
                "the Kafka producer queue is full".into(),
            )),
            Some(Failure::QueueFull) => Err(IngestError::Unavailable {
                reason: "the Kafka producer queue is full".into(),
                durable,
            }),
            Some(Failure::Other(reason)) => Err(IngestError::Unavailable { reason, durable }),
        }
    }

    /// Waits up to `timeout` for every queued record to be acknowledged.
    pub fn flush(&self, timeout: Duration) {
        if let Err(err) = self.producer.flush(timeout) {
            tracing::warn!(%err, "records still unacknowledged at shutdown");
        }
    }
}

enum Failure {
    QueueFull,
    Other(String),
}

fn describe(err: &KafkaError) -> Failure {
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => Failure::QueueFull,
        Some(RDKafkaErrorCode::MessageTimedOut) => Failure::Other(
            "no acknowledgement within kafka.publish_timeout_ms; is Kafka up? \
             (`deploy/servers/kafka.sh start`)"
                .into(),
        ),
        _ => Failure::Other(err.to_string()),
    }
}
