//! The consumer loop: read a batch of `sluice.events`, write it, then commit
//! the offsets after the batch — never before its writes succeeded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use sluice_log::{Commit, Delivery, GroupConsumer, MessageLog};
use sluice_log::{Log, LogConsumer};
use sluice_node::CancellationToken;
use sluice_node::trace::{HEADER, TARGET};
use sluice_proto::v1::Event;

use crate::record::Position;
use crate::scoring::Dirty;
use crate::writer::Writer;
use crate::{RecorderConfig, RecorderError};

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Reads up to `max` records: waits for the first, then at most `wait` more.
/// Returns what it has when `stop` is cancelled.
/// Meanwhile measures the group's lag into `lag` every few seconds.
async fn next_batch(
    consumer: &mut LogConsumer,
    (max, wait): (usize, Duration),
    writer: &Writer,
    stop: &CancellationToken,
) -> Vec<Delivery> {
    let lag = &writer.metrics.consumer_lag;
    let mut batch = Vec::new();
    let mut deadline = None;
    while batch.len() < max {
        let left = match deadline {
            Some(d) => d - tokio::time::Instant::now().min(d),
            None => Duration::from_secs(1),
        };
        if deadline.is_some() && left.is_zero() {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            polled = consumer.poll_at_most(left, max - batch.len()) => match polled {
                Ok(records) => {
                    if !records.is_empty() {
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + wait);
                    }
                    batch.extend(records);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "message log read failed; continuing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
        // Kafka moves partitions between recorders; a batch commits only
        // what it read, but the counter parts of a partition that moved may
        // have moved on elsewhere: read them again.
        if log_rebalances(consumer) {
            writer.forget_parts();
        }
        lag.refresh(|| consumer.lag());
    }
    batch
}

/// Logs the member's partition changes; true when there were any.
fn log_rebalances(consumer: &mut LogConsumer) -> bool {
    let mut any = false;
    for event in consumer.rebalances() {
        tracing::info!(?event, "recorder partitions rebalanced");
        any = true;
    }
    any
}

/// Decodes a batch; malformed records are logged with their offset, counted
/// and left out (their offsets are still committed with the batch).
fn decode(batch: &[Delivery], writer: &Writer) -> (Vec<Event>, Vec<Position>) {
    let mut events = Vec::with_capacity(batch.len());
    let mut positions = Vec::with_capacity(batch.len());
    for msg in batch {
        match Event::decode(msg.payload.as_slice()) {
            Ok(event) if !event.message_id.is_empty() => {
                events.push(event);
                positions.push(Position {
                    partition: msg.partition,
                    offset: msg.offset,
                });
            }
            outcome => {
                let error = outcome
                    .err()
                    .map_or("empty message_id".to_owned(), |e| e.to_string());
                tracing::warn!(
                    topic = %msg.topic,
                    partition = msg.partition,
                    offset = msg.offset,
                    %error,
                    "skipping a malformed event record"
                );
                writer.metrics.malformed.inc();
            }
        }
    }
    (events, positions)
}

/// A `recorder.record` span for each record of the batch that carries a
/// trace context, when traces are exported: from the batch's start until
/// it is written and committed.
fn record_spans(batch: &[Delivery], events: usize) -> Vec<tracing::Span> {
    if !sluice_node::trace::enabled() {
        return Vec::new();
    }
    let traced = batch
        .iter()
        .filter_map(|msg| Some((msg, sluice_log::header(&msg.headers, HEADER)?)));
    traced
        .map(|(msg, parent)| {
            let span = tracing::info_span!(
                target: TARGET, "recorder.record",
                message_id = %String::from_utf8_lossy(&msg.key),
                partition = msg.partition, offset = msg.offset, batch_events = events,
            );
            sluice_node::trace::with_traceparent(&span, Some(parent));
            span
        })
        .collect()
}

/// Commits, per partition, the offset after the batch's last record.
async fn commit(consumer: &mut LogConsumer, batch: &[Delivery]) -> Result<(), RecorderError> {
    consumer.commit(&Commit::after(batch)).await?;
    Ok(())
}

/// Consumes `config.topic` until `stop` is cancelled, writing every batch
/// through `writer` and committing its offsets only once it is written.
pub(crate) async fn run(
    log: &Log,
    config: &RecorderConfig,
    writer: &Writer,
    dirty: &Dirty,
    stop: CancellationToken,
) -> Result<(), RecorderError> {
    let topics = [config.topic.clone()];
    log.ensure_topics_as(&[(config.topic.clone(), config.topics.events)])
        .await?;
    let mut consumer = log.subscribe(&config.group, &topics).await?;
    tracing::info!(topic = %config.topic, group = %config.group, "recorder consuming");
    loop {
        if stop.is_cancelled() {
            break;
        }
        let batch = next_batch(
            &mut consumer,
            (config.batch_max_events, config.batch_max_wait()),
            writer,
            &stop,
        )
        .await;
        if batch.is_empty() {
            continue;
        }
        let (mut events, positions) = decode(&batch, writer);
        match writer.enrich(&mut events).await {
            Ok(()) => {}
            Err(RecorderError::ShuttingDown) => break,
            Err(err) => return Err(err),
        }
        let traced = record_spans(&batch, events.len());
        let started = std::time::Instant::now();
        let events: Vec<(Event, Position)> = events.into_iter().zip(positions).collect();
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
        writer
            .metrics
            .write_seconds
            .observe(started.elapsed().as_secs_f64());
        writer.metrics.batch_events.observe(events.len() as f64);
        if let Err(err) = commit(&mut consumer, &batch).await {
            writer.metrics.commit_failures.inc();
            tracing::warn!(error = %err, "offset commit failed; the batch will be read again and de-duplicated");
        }
        // Each traced event's span ends once its batch is written and committed.
        drop(traced);
        let m = &writer.metrics;
        m.counted.inc_by(written.counted);
        m.duplicates.inc_by(written.duplicates);
        m.duplicate_deliveries.inc_by(written.duplicate_deliveries);
        m.tenant_events(&written.by_tenant);
        if written.duplicate_deliveries > 0 {
            tracing::warn!(
                count = written.duplicate_deliveries,
                "messages delivered more than once (a delivery on the wire when a sender stopped); counted once in the stats"
            );
        }
        m.batches.inc();
        dirty.mark(written.paths, written.tenants);
    }
    Ok(())
}
