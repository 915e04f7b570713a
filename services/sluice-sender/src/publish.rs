//! Publishing fates to Kafka. A fate is durable only once every record of it
//! is acknowledged (idempotent producer, acks=all); until then the offset of
//! the record it belongs to stays uncommitted. Publishing retries until it
//! succeeds or the node shuts down: when Kafka is unreachable nothing can be
//! made durable, so nothing is committed either.

use std::time::Duration;

use prost::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_proto::v1::Envelope;

use crate::fate::Fate;

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    events_topic: String,
}

impl Publisher {
    pub fn new(producer: FutureProducer, events_topic: String) -> Self {
        Self {
            producer,
            events_topic,
        }
    }

    /// Publishes the re-queued envelope (if any), then the event (if any).
    /// Returns when both are acknowledged.
    pub async fn publish(&self, fate: &Fate) {
        if let Some((topic, envelope)) = &fate.requeue {
            self.send(topic, &envelope.message_id, envelope.encode_to_vec())
                .await;
        }
        if let Some(event) = &fate.event {
            self.send(&self.events_topic, &event.message_id, event.encode_to_vec())
                .await;
        }
    }

    /// Publishes an envelope to `topic` (used by tests and tools).
    pub async fn envelope(&self, topic: &str, envelope: &Envelope) {
        self.send(topic, &envelope.message_id, envelope.encode_to_vec())
            .await;
    }

    async fn send(&self, topic: &str, key: &str, payload: Vec<u8>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let record = FutureRecord::to(topic).key(key).payload(&payload);
            match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => return,
                Err((err, _)) => {
                    tracing::warn!(
                        topic, key, error = %err,
                        "publishing a fate failed; retrying in {backoff:?} (the record's offset stays uncommitted until it succeeds)"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
