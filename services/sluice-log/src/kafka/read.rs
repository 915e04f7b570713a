//! Reads of single partitions on cached, assign-only consumers.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{LogError, ReadLimit, Record};

/// An assign-only consumer of one partition.
pub(super) struct Reader {
    consumer: BaseConsumer,
    /// The offset the consumer's queue continues at, if it is assigned.
    next: Option<i64>,
    /// The cluster, for errors.
    brokers: String,
}

impl Reader {
    pub(super) fn new(consumer: BaseConsumer, brokers: &str) -> Self {
        Self {
            consumer,
            next: None,
            brokers: brokers.to_owned(),
        }
    }
}

/// One read of a partition on its cached consumer: re-assigns unless the
/// consumer already continues at `from`, waits up to `wait` for the first
/// record, then takes what is already fetched up to `limit`.
pub(super) fn read_blocking(
    reader: &mut Reader,
    topic: &str,
    partition: i32,
    from: i64,
    limit: ReadLimit,
    wait: Duration,
) -> Result<Vec<Record>, LogError> {
    if reader.next != Some(from) {
        reader.next = None;
        let start = if from < 0 {
            // Negative raw offsets are rdkafka's logical offsets.
            Offset::Beginning
        } else {
            Offset::Offset(from)
        };
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, start)
            .map_err(|e| LogError::from_kafka(e, &reader.brokers, Some(topic)))?;
        reader
            .consumer
            .assign(&assignment)
            .map_err(|e| LogError::from_kafka(e, &reader.brokers, Some(topic)))?;
    }
    let deadline = Instant::now() + wait;
    let mut out: Vec<Record> = Vec::new();
    let mut bytes = 0;
    while out.len() < limit.max_records && (out.is_empty() || bytes < limit.max_bytes) {
        let timeout = if out.is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        match reader.consumer.poll(timeout) {
            Some(Ok(message)) => {
                // Below `from` only after a `from` beyond the end made the
                // consumer restart at the earliest record: skip forward.
                if message.offset() < from {
                    continue;
                }
                let key = message.key().unwrap_or_default().to_vec();
                let payload = message.payload().unwrap_or_default().to_vec();
                let headers = super::read_headers(&message);
                bytes += crate::log::record_size(&key, &payload, &headers);
                out.push(Record {
                    partition,
                    offset: message.offset(),
                    key,
                    payload,
                    headers,
                });
            }
            Some(Err(err)) => {
                // Error events (transport hiccups, which librdkafka retries)
                // come once each: note them and keep polling.
                tracing::debug!(%topic, partition, error = %err, "kafka read");
                if !out.is_empty() {
                    break;
                }
            }
            None if out.is_empty() && Instant::now() < deadline => {}
            None => break,
        }
    }
    reader.next = Some(out.last().map_or(from, |r| r.offset + 1));
    Ok(out)
}
