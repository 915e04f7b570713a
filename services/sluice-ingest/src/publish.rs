//! Publishes envelopes and events to the message log (Kafka with the
//! idempotent `acks=all` producer, or the embedded log's fsync'd appends)
//! and reports which message ids were acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use sluice_log::Log;
use sluice_log::{MessageLog, NewRecord};

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

/// The log writer of an ingest node.
#[derive(Clone)]
pub struct Publisher {
    log: Log,
    /// Records handed to the log and not yet acknowledged.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    /// How long a submission waits for the log's acknowledgements.
    timeout: Duration,
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

/// Gives back its records' share of the queue when dropped, so a cancelled
/// submission frees its room too.
struct Queued<'a>(&'a AtomicUsize, usize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
    }
}

impl Publisher {
    /// A publisher writing to `log`.
    pub fn new(config: &IngestConfig, log: Log) -> Self {
        Self {
            log,
            queued: Arc::default(),
            max_queued: config.kafka.max_queued_records as usize,
            timeout: config.kafka.publish_timeout.into(),
            outbound_prefix: config.kafka.outbound_topic_prefix.clone(),
            events_topic: config.kafka.events_topic.clone(),
        }
    }

    /// Whether the log answers now (the events topic's metadata within 2 s)
    /// and has room for more records; else why not.
    pub async fn ready(&self) -> Result<(), String> {
        if self.queued.load(Ordering::Relaxed) >= self.max_queued {
            return Err("kafka.max_queued_records are waiting for the log".into());
        }
        let asked = self.log.partitions(&self.events_topic);
        match tokio::time::timeout(Duration::from_secs(2), asked).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("the message log: {err}")),
            Err(_) => Err("the message log did not answer within 2 s".into()),
        }
    }

    /// Outbound topic of `pool`.
    pub fn outbound_topic(&self, pool: &str) -> String {
        format!("{}{pool}", self.outbound_prefix)
    }

    /// The events topic.
    pub fn events_topic(&self) -> &str {
        &self.events_topic
    }

    /// Publishes every record and waits for the log's acknowledgements. On
    /// failure the error lists the message ids that are durable anyway.
    pub async fn publish(&self, records: Vec<OutRecord>) -> Result<(), IngestError> {
        let queued = self.queued.fetch_add(records.len(), Ordering::Relaxed);
        let _share = Queued(&self.queued, records.len());
        if queued + records.len() > self.max_queued {
            return Err(IngestError::Backpressure(format!(
                "{queued} records await the log's acknowledgement; this node holds at most {} \
                 (kafka.max_queued_records)",
                self.max_queued
            )));
        }
        // Every record carries the submission's span: a sender's attempt and
        // the recorder's write join its trace.
        let traceparent = sluice_node::trace::traceparent(&tracing::Span::current());
        let appends = records.iter().map(|r| async {
            let Some(value) = &traceparent else {
                return self
                    .log
                    .append(&r.topic, r.key.as_bytes(), &r.payload)
                    .await;
            };
            let record = NewRecord::new(r.topic.as_str(), r.key.as_bytes(), r.payload.as_slice())
                .with_header(sluice_node::trace::HEADER, value.as_bytes());
            self.log.append_record(record).await
        });
        let Ok(results) = tokio::time::timeout(self.timeout, join_all(appends)).await else {
            // Records may still land after this answer; the client retries
            // with its idempotency key, and the recorder de-duplicates.
            return Err(IngestError::Unavailable {
                reason: format!(
                    "no acknowledgement within kafka.publish_timeout ({} ms); is the log up? \
                     (Kafka: `deploy/servers/kafka.sh start`)",
                    self.timeout.as_millis()
                ),
                durable: Vec::new(),
            });
        };
        let mut durable = Vec::new();
        let mut failure = None;
        for (result, record) in results.into_iter().zip(&records) {
            match result {
                Ok(_) if record.marks_durable => durable.push(record.key.clone()),
                Ok(_) => {}
                Err(err) => failure = Some(err),
            }
        }
        match failure {
            None => Ok(()),
            Some(err) => Err(IngestError::from_log(err, durable)),
        }
    }
}
