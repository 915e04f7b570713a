//! Publishing fates to the message log. A fate is durable only once every
//! record of it is acknowledged (Kafka: idempotent producer, acks=all; the
//! embedded log: fsync'd); until then the offset of the record it belongs to
//! stays uncommitted. Publishing retries until it succeeds or the node shuts
//! down: when the log is unreachable nothing can be made durable, so nothing
//! is committed either.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use sluice_log::{Log, MessageLog, NewRecord};
use sluice_node::trace::{HEADER, TARGET, traceparent};
use sluice_proto::v1::Envelope;
use tracing::Instrument;

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
        self.publish_traced(fate, rec.trace.as_deref()).await;
        if let Some(index) = &self.index {
            index.settle(rec).await;
        }
    }

    /// Publishes the re-queued envelope (if any), the event (if any) and the
    /// notification to the submitter with its `accepted` event (if any), side
    /// by side. Returns when all are acknowledged.
    pub async fn publish(&self, fate: &Fate) {
        self.publish_traced(fate, None).await;
    }

    /// [`Publisher::publish`], the records carrying `trace` (a
    /// `traceparent`): the event as is, the re-queued envelope under a
    /// `sender.requeue` span that says where it waits and until when. The
    /// appends are independent (a crash between them leaves the record
    /// without its index entry, so it is handled again either way), so they
    /// share one round of acknowledgements: the window in which a crash
    /// makes a delivered record go out again is one append shorter than
    /// with the copy and the event one after the other.
    async fn publish_traced(&self, fate: &Fate, trace: Option<&str>) {
        let requeue = async {
            if let Some((topic, envelope)) = &fate.requeue {
                let payload = envelope.encode_to_vec();
                let span = requeue_span(topic, envelope, trace);
                let trace = traceparent(&span);
                let sent = self.send(topic, &envelope.message_id, payload, trace.as_deref());
                sent.instrument(span).await;
            }
        };
        let event = async {
            if let Some(event) = &fate.event {
                let payload = event.encode_to_vec();
                self.send(&self.events_topic, &event.message_id, payload, trace)
                    .await;
            }
        };
        let notice = async {
            if let Some(notice) = &fate.notice {
                let (dsn, accepted) = (&notice.envelope, &notice.accepted);
                let id = &dsn.message_id;
                let envelope = self.send(&notice.topic, id, dsn.encode_to_vec(), None);
                let event = self.send(&self.events_topic, id, accepted.encode_to_vec(), None);
                tokio::join!(envelope, event);
            }
        };
        tokio::join!(requeue, event, notice);
    }

    /// Publishes an envelope to `topic` (used by tests and tools).
    pub async fn envelope(&self, topic: &str, envelope: &Envelope) {
        self.send(topic, &envelope.message_id, envelope.encode_to_vec(), None)
            .await;
    }

    async fn send(&self, topic: &str, key: &str, payload: Vec<u8>, trace: Option<&str>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let appended = match trace {
                None => self.log.append(topic, key.as_bytes(), &payload).await,
                Some(value) => {
                    let record = NewRecord::new(topic, key.as_bytes(), payload.as_slice())
                        .with_header(HEADER, value.as_bytes());
                    self.log.append_record(record).await
                }
            };
            match appended {
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

/// The span of a re-queue: a child of the attempt (or of the record when
/// none was made), naming the delay tier and when the message comes back.
fn requeue_span(topic: &str, envelope: &Envelope, parent: Option<&str>) -> tracing::Span {
    if parent.is_none() {
        return tracing::Span::none();
    }
    let until = envelope.hold_until.as_ref().map(|t| t.seconds).unwrap_or(0);
    let span = tracing::info_span!(
        target: TARGET, "sender.requeue",
        topic, message_id = %envelope.message_id, hold_until_unix = until,
        attempt = envelope.attempt,
    );
    sluice_node::trace::with_traceparent(&span, parent.map(str::as_bytes));
    span
}
