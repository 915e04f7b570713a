//! Publishing fates to the message log. A fate is durable only once every
//! record of it is acknowledged (Kafka: idempotent producer, acks=all; the
//! embedded log: fsync'd); until then the offset of the record it belongs to
//! stays uncommitted. Publishing retries until it succeeds or the node shuts
//! down: when the log is unreachable nothing can be made durable, so nothing
//! is committed either.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use sluice_log::{Log, MessageLog};
use sluice_proto::v1::Envelope;

use crate::dispatch::RecordRef;
use crate::fate::Fate;
use crate::fate_index::FateIndex;

#[derive(Clone)]
pub struct Publisher {
    log: Log,
    events_topic: String,
    index: Option<Arc<FateIndex>>,
}

impl Publisher {
    pub fn new(log: Log, events_topic: String) -> Self {
        Self {
            log,
            events_topic,
            index: None,
        }
    }

    /// Also appends each record's fate index entry (docs/fate-index.md).
    pub(crate) fn with_index(mut self, index: Arc<FateIndex>) -> Self {
        self.index = Some(index);
        self
    }

    /// Publishes `fate`, then the fate index entry of `rec`: the entry comes
    /// only after the fate is durable, so it never names a record whose fate
    /// could still be lost. (One atomic batch would do on the embedded log,
    /// but its batches are not group-committed: one fsync each, which under
    /// overflow traffic delays every fate far more than three appends that
    /// share fsyncs with their neighbours.)
    pub(crate) async fn settle(&self, rec: &RecordRef, fate: &Fate) {
        self.publish(fate).await;
        if let Some(index) = &self.index {
            index.settle(rec).await;
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
            match self.log.append(topic, key.as_bytes(), &payload).await {
                Ok(_) => return,
                Err(err) => {
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
