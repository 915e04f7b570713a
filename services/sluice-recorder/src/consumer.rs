//! The consumer loop: read a batch of `sluice.events`, write it, then commit
//! the offsets after the batch — never before its writes succeeded.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use sluice_proto::v1::Event;
use tokio::sync::watch;

use crate::scoring::Dirty;
use crate::writer::Writer;
use crate::{RecorderConfig, RecorderError};

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Reads up to `max` records: waits for the first, then at most `wait` more.
/// Returns what it has when `stop` turns true.
async fn next_batch(
    consumer: &StreamConsumer,
    max: usize,
    wait: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Vec<OwnedMessage> {
    let mut batch = Vec::new();
    let mut deadline = None;
    while batch.len() < max {
        let until =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = crate::stopped(stop) => break,
            _ = tokio::time::sleep_until(until) => break,
            received = consumer.recv() => match received {
                Ok(msg) => {
                    batch.push(msg.detach());
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + wait);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Kafka consumer error; continuing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
    batch
}

/// Decodes a batch; malformed records are logged with their offset, counted
/// and left out (their offsets are still committed with the batch).
fn decode(batch: &[OwnedMessage], writer: &Writer) -> Vec<Event> {
    let mut events = Vec::with_capacity(batch.len());
    for msg in batch {
        match Event::decode(msg.payload().unwrap_or_default()) {
            Ok(event) if !event.message_id.is_empty() => events.push(event),
            outcome => {
                let error = outcome
                    .err()
                    .map_or("empty message_id".to_owned(), |e| e.to_string());
                tracing::warn!(
                    topic = msg.topic(),
                    partition = msg.partition(),
                    offset = msg.offset(),
                    %error,
                    "skipping a malformed event record"
                );
                writer.metrics.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    events
}

/// Commits, per partition, the offset after the batch's last record.
fn commit(consumer: &StreamConsumer, batch: &[OwnedMessage]) -> Result<(), RecorderError> {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for msg in batch {
        let slot = next.entry((msg.topic(), msg.partition())).or_insert(0);
        *slot = (*slot).max(msg.offset() + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    consumer.commit(&tpl, CommitMode::Sync)?;
    Ok(())
}

/// Consumes `config.topic` until `stop` turns true, writing every batch
/// through `writer` and committing its offsets only once it is written.
pub(crate) async fn run(
    config: &RecorderConfig,
    writer: &Writer,
    dirty: &Dirty,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RecorderError> {
    let consumer: StreamConsumer = config.kafka().consumer(&config.group).create()?;
    consumer.subscribe(&[config.topic.as_str()])?;
    tracing::info!(topic = %config.topic, group = %config.group, "recorder consuming");
    loop {
        let stopping = *stop.borrow();
        if stopping {
            break;
        }
        let batch = next_batch(
            &consumer,
            config.batch_max_events,
            config.batch_max_wait(),
            &mut stop,
        )
        .await;
        if batch.is_empty() {
            continue;
        }
        let events = decode(&batch, writer);
        let written = match writer.write(&events, now_secs()).await {
            Ok(written) => written,
            Err(RecorderError::ShuttingDown) => {
                tracing::info!(
                    records = batch.len(),
                    "stopped before the batch was written; not committing it"
                );
                break;
            }
            Err(err) => return Err(err),
        };
        if let Err(err) = commit(&consumer, &batch) {
            writer
                .metrics
                .commit_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %err, "offset commit failed; the batch will be read again and de-duplicated");
        }
        let m = &writer.metrics;
        m.counted.fetch_add(written.counted, Ordering::Relaxed);
        m.duplicates
            .fetch_add(written.duplicates, Ordering::Relaxed);
        m.batches.fetch_add(1, Ordering::Relaxed);
        dirty.mark(written.paths, written.tenants);
    }
    Ok(())
}
