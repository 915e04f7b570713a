//! [`CqlLedger`], the ScyllaDB/Cassandra back end of the recorder's
//! [`Ledger`](crate::Ledger): prepared statements and one method per write.
//! Reads live in `ledger_cql_read.rs`. The tables are created by
//! `sluice migrate` (crate `sluice-cql`), never here.

use std::future::Future;

use futures::{StreamExt, TryStreamExt};
use prost::Message;
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlValue};
use sluice_proto::v1::Event;

use crate::RecorderError;
use crate::ledger::Claim;
use crate::record::{self, COLUMNS, CounterKey, Deltas, Granularity, Part, Position};

/// Campaign rows per unlogged batch: about 200 bytes each, so a batch stays
/// under Cassandra's 5 KiB warning threshold.
const CAMPAIGN_BATCH_ROWS: usize = 16;

/// The events that have a campaign, grouped by their campaign row's
/// partition (campaign, hour) in chunks of at most [`CAMPAIGN_BATCH_ROWS`].
fn campaign_batches<'a>(events: &[&'a Event], now_secs: i64) -> Vec<Vec<&'a Event>> {
    let mut by_partition: std::collections::BTreeMap<(&str, String), Vec<&Event>> =
        std::collections::BTreeMap::new();
    for event in events.iter().filter(|e| !e.campaign.is_empty()) {
        let hour = crate::time::hour_of(record::event_secs(event, now_secs));
        by_partition
            .entry((event.campaign.as_str(), hour))
            .or_default()
            .push(event);
    }
    by_partition
        .into_values()
        .flat_map(|rows| {
            rows.chunks(CAMPAIGN_BATCH_ROWS)
                .map(<[&Event]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The recorder's ledger in a migrated keyspace: the session and the
/// prepared statements.
pub struct CqlLedger {
    pub(crate) session: Session,
    pub(crate) ks: String,
    pub(crate) status_ttl: i32,
    dedup_ttl: i32,
    insert_event: PreparedStatement,
    insert_campaign: PreparedStatement,
    insert_suppression: PreparedStatement,
    list_suppression: PreparedStatement,
    pub(crate) select_suppression: PreparedStatement,
    read_claim: PreparedStatement,
    write_claim: PreparedStatement,
    read_daily_part: PreparedStatement,
    read_hourly_part: PreparedStatement,
    write_daily_part: PreparedStatement,
    write_hourly_part: PreparedStatement,
    pub(crate) insert_webhook_attempt: PreparedStatement,
    pub(crate) select_webhook_attempts: PreparedStatement,
    /// Statements of one call in flight at once.
    concurrency: usize,
}

fn days_to_secs(days: u32) -> i32 {
    i32::try_from(u64::from(days) * 86_400).unwrap_or(i32::MAX)
}

/// Statements of one call in flight at once, unless set otherwise.
const DEFAULT_CONCURRENCY: usize = 128;

type B = Option<i64>;
/// A part row's counters and `through` as read; columns added after the
/// row was written read as null (0).
type PartRow = (B, B, B, B, B, B, B, B, B, B, B, i64);

fn part_of((a, b, c, d, e, f, g, h, i, j, k, through): PartRow) -> Part {
    Part {
        deltas: Deltas([a, b, c, d, e, f, g, h, i, j, k].map(|v| v.unwrap_or(0))),
        through,
    }
}

/// The bound values of a part's write: the row's key, its counters,
/// `through` and the write timestamp.
fn part_write(key: Vec<CqlValue>, part: &Part, stamp: i64) -> Vec<CqlValue> {
    let mut values = key;
    values.extend(part.deltas.0.iter().map(|v| CqlValue::BigInt(*v)));
    values.push(CqlValue::BigInt(part.through));
    values.push(CqlValue::BigInt(stamp));
    values
}

impl CqlLedger {
    /// Prepares every statement against `ks`, which `sluice migrate` must
    /// have created: fails with [`sluice_cql::CqlError::MissingTable`]
    /// otherwise.
    pub async fn prepare(
        session: Session,
        ks: &str,
        status_ttl_days: u32,
        dedup_ttl_days: u32,
    ) -> Result<Self, RecorderError> {
        sluice_cql::require_tables(&session, ks, sluice_cql::RECORDER_TABLES).await?;
        let prep = |cql: String| {
            let session = &session;
            async move {
                session
                    .prepare(cql.clone())
                    .await
                    .map_err(|e| RecorderError::cql(format!("preparing `{cql}`"), e))
            }
        };
        let columns = COLUMNS.join(", ");
        let marks = vec!["?"; COLUMNS.len() + 1].join(", ");
        Ok(Self {
            insert_event: prep(format!(
                "INSERT INTO {ks}.message_events (message_id, event_at, event_id, kind, attempt, event) \
                 VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            insert_campaign: prep(format!(
                "INSERT INTO {ks}.campaign_events (campaign, hour, event_at, event_id, message_id, kind, \
                 tenant, recipient, source_ip, site) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            insert_suppression: prep(format!(
                "INSERT INTO {ks}.suppressions (tenant, address, reason, created_at, message_id) \
                 VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            list_suppression: prep(format!(
                "INSERT INTO {ks}.config_suppressions (tenant, address, reason, created_at, revision) \
                 VALUES (?, ?, ?, ?, 0)"
            ))
            .await?,
            select_suppression: prep(format!(
                "SELECT address FROM {ks}.suppressions WHERE tenant = ? AND address = ?"
            ))
            .await?,
            read_claim: prep(format!(
                "SELECT event_id, log_partition, log_offset FROM {ks}.event_dedup \
                 WHERE message_id = ? AND attempt = ? AND kind = ?"
            ))
            .await?,
            write_claim: prep(format!(
                "INSERT INTO {ks}.event_dedup (message_id, attempt, kind, event_id, log_partition, log_offset) \
                 VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            read_daily_part: prep(format!(
                "SELECT {columns}, through FROM {ks}.daily_counter_parts \
                 WHERE scope = ? AND key = ? AND day = ? AND detail = ? AND log_partition = ?"
            ))
            .await?,
            read_hourly_part: prep(format!(
                "SELECT {columns}, through FROM {ks}.hourly_counter_parts \
                 WHERE scope = ? AND key = ? AND day = ? AND hour = ? AND detail = ? AND log_partition = ?"
            ))
            .await?,
            write_daily_part: prep(format!(
                "INSERT INTO {ks}.daily_counter_parts (scope, key, day, detail, log_partition, {columns}, through) \
                 VALUES (?, ?, ?, ?, ?, {marks}) USING TIMESTAMP ?"
            ))
            .await?,
            write_hourly_part: prep(format!(
                "INSERT INTO {ks}.hourly_counter_parts (scope, key, day, hour, detail, log_partition, {columns}, through) \
                 VALUES (?, ?, ?, ?, ?, ?, {marks}) USING TIMESTAMP ?"
            ))
            .await?,
            insert_webhook_attempt: prep(format!(
                "INSERT INTO {ks}.webhook_deliveries (tenant, webhook_id, day, at, event_id, attempt, record) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            select_webhook_attempts: prep(format!(
                "SELECT record FROM {ks}.webhook_deliveries WHERE tenant = ? AND webhook_id = ? AND day = ? LIMIT ?"
            ))
            .await?,
            concurrency: DEFAULT_CONCURRENCY,
            session,
            ks: ks.to_owned(),
            status_ttl: days_to_secs(status_ttl_days),
            dedup_ttl: days_to_secs(dedup_ttl_days),
        })
    }

    /// Sets how many statements one call keeps in flight (at least 1).
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Runs `calls`, [`Self::concurrency`] at a time; results in their
    /// order, or the first error. (The calls are made before the first
    /// await, so no closure is held across it.)
    async fn each<R, Fut>(&self, calls: Vec<Fut>) -> Result<Vec<R>, RecorderError>
    where
        Fut: Future<Output = Result<R, RecorderError>>,
    {
        futures::stream::iter(calls)
            .buffered(self.concurrency)
            .try_collect()
            .await
    }

    /// Writes the idempotent rows of every event. Safe to repeat.
    pub async fn write_rows(&self, events: &[&Event], now_secs: i64) -> Result<(), RecorderError> {
        let calls = events
            .iter()
            .map(|e| self.event_rows(e, now_secs))
            .collect();
        let batches = campaign_batches(events, now_secs)
            .into_iter()
            .map(|rows| self.campaign_rows(rows, now_secs))
            .collect();
        futures::try_join!(self.each(calls), self.each(batches))?;
        Ok(())
    }

    /// Campaign rows of one (campaign, hour) partition in one unlogged batch:
    /// one mutation where one statement per row cost Cassandra a request each.
    async fn campaign_rows(&self, rows: Vec<&Event>, now_secs: i64) -> Result<(), RecorderError> {
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values = Vec::with_capacity(rows.len());
        for event in rows {
            batch.append_statement(self.insert_campaign.clone());
            let at = CqlTimestamp(record::event_millis(event, now_secs));
            values.push((
                &event.campaign,
                crate::time::hour_of(record::event_secs(event, now_secs)),
                at,
                &event.event_id,
                &event.message_id,
                event.kind,
                &event.tenant,
                &event.recipient,
                &event.source_ip,
                &event.site,
                self.status_ttl,
            ));
        }
        self.session
            .batch(&batch, values)
            .await
            .map_err(|e| RecorderError::cql("writing campaign_events", e))?;
        Ok(())
    }

    /// One event's history row and suppression.
    async fn event_rows(&self, event: &Event, now_secs: i64) -> Result<(), RecorderError> {
        let at = CqlTimestamp(record::event_millis(event, now_secs));
        let attempt = i32::try_from(event.attempt).unwrap_or(i32::MAX);
        let history = self.session.execute_unpaged(
            &self.insert_event,
            (
                &event.message_id,
                at,
                &event.event_id,
                event.kind,
                attempt,
                event.encode_to_vec(),
                self.status_ttl,
            ),
        );
        history
            .await
            .map_err(|e| RecorderError::cql("writing message_events", e))?;
        if let Some((tenant, address, reason)) = record::suppression(event) {
            let values = (tenant, &address, reason, at, &event.message_id);
            self.session
                .execute_unpaged(&self.insert_suppression, values)
                .await
                .map_err(|e| RecorderError::cql("writing suppressions", e))?;
            // The same list control lists and removes from (revision 0: not
            // a configuration change), so a tenant has one suppression list.
            self.session
                .execute_unpaged(&self.list_suppression, (tenant, &address, reason, at))
                .await
                .map_err(|e| RecorderError::cql("writing config_suppressions", e))?;
        }
        Ok(())
    }

    /// Decides every claim (a plain read) and writes the new ones (a plain
    /// write): see [`crate::Ledger::claim`].
    pub async fn claim(&self, claims: &[(&Event, Position)]) -> Result<Vec<Claim>, RecorderError> {
        let calls = claims
            .iter()
            .map(|(e, at)| self.claim_one(e, *at))
            .collect();
        self.each(calls).await
    }

    async fn claim_one(&self, event: &Event, at: Position) -> Result<Claim, RecorderError> {
        let (message_id, attempt, kind) = record::dedup_key(event);
        let attempt = i32::try_from(attempt).unwrap_or(i32::MAX);
        let key = (&message_id, attempt, kind);
        let stored = self
            .session
            .execute_unpaged(&self.read_claim, key)
            .await
            .map_err(|e| RecorderError::cql("reading event_dedup", e))?
            .into_rows_result()
            .map_err(|e| RecorderError::cql("reading event_dedup", e))?
            .maybe_first_row::<(Option<String>, Option<i32>, Option<i64>)>()
            .map_err(|e| RecorderError::cql("reading event_dedup", e))?
            .map(|(id, partition, offset)| {
                let at = partition
                    .zip(offset)
                    .map(|(partition, offset)| Position { partition, offset });
                (id.unwrap_or_default(), at)
            });
        let claim = crate::ledger::decide_claim(stored.as_ref(), event, at);
        if claim == Claim::New && stored.is_none() {
            let values = (
                &message_id,
                attempt,
                kind,
                &event.event_id,
                at.partition,
                at.offset,
                self.dedup_ttl,
            );
            self.session
                .execute_unpaged(&self.write_claim, values)
                .await
                .map_err(|e| RecorderError::cql("writing event_dedup", e))?;
        }
        Ok(claim)
    }

    /// The stored part of each (counter row, events partition).
    pub async fn parts(&self, keys: &[(CounterKey, i32)]) -> Result<Vec<Part>, RecorderError> {
        let calls = keys.iter().map(|(k, p)| self.part(k, *p)).collect();
        self.each(calls).await
    }

    async fn part(&self, key: &CounterKey, partition: i32) -> Result<Part, RecorderError> {
        let (scope, k, day, detail) = (key.scope, &key.key, &key.day, &key.detail);
        let result = match key.granularity {
            Granularity::Daily => {
                let values = (scope, k, day, detail, partition);
                self.session
                    .execute_unpaged(&self.read_daily_part, values)
                    .await
            }
            Granularity::Hourly => {
                let values = (scope, k, day, &key.hour, detail, partition);
                self.session
                    .execute_unpaged(&self.read_hourly_part, values)
                    .await
            }
        };
        let row = result
            .map_err(|e| RecorderError::cql("reading a counter part", e))?
            .into_rows_result()
            .map_err(|e| RecorderError::cql("reading a counter part", e))?
            .maybe_first_row::<PartRow>()
            .map_err(|e| RecorderError::cql("reading a counter part", e))?;
        Ok(row.map(part_of).unwrap_or_default())
    }

    /// Writes every part with its `through` as the write timestamp, so a
    /// part further along always wins whatever order writes land in.
    pub async fn put_parts(&self, parts: &[(CounterKey, i32, Part)]) -> Result<(), RecorderError> {
        let calls = parts
            .iter()
            .map(|(k, p, part)| self.put_part(k, *p, part))
            .collect();
        self.each(calls).await?;
        Ok(())
    }

    async fn put_part(
        &self,
        key: &CounterKey,
        partition: i32,
        part: &Part,
    ) -> Result<(), RecorderError> {
        let text = |v: &str| CqlValue::Text(v.to_owned());
        let mut row = vec![text(key.scope), text(&key.key), text(&key.day)];
        if key.granularity == Granularity::Hourly {
            row.push(text(&key.hour));
        }
        row.extend([text(&key.detail), CqlValue::Int(partition)]);
        // Offsets start at 0; write timestamps must be positive.
        let values = part_write(row, part, part.through.saturating_add(1));
        let statement = match key.granularity {
            Granularity::Daily => &self.write_daily_part,
            Granularity::Hourly => &self.write_hourly_part,
        };
        let result = self.session.execute_unpaged(statement, values).await;
        result
            .map(drop)
            .map_err(|e| RecorderError::cql("writing a counter part", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(campaign: &str, secs: i64, id: usize) -> Event {
        Event {
            event_id: format!("e{id}"),
            campaign: campaign.into(),
            at: Some(prost_types::Timestamp {
                seconds: secs,
                nanos: 0,
            }),
            ..Event::default()
        }
    }

    #[test]
    fn campaign_rows_are_batched_by_partition_in_bounded_chunks() {
        let hour = 1_764_000_000; // 2025-11-24T16:00Z, on the hour
        let mut events = Vec::new();
        for i in 0..40 {
            events.push(event("spring", hour + 10, i));
        }
        for i in 40..45 {
            events.push(event("spring", hour + 3600, i));
            events.push(event("", hour, i + 100));
            events.push(event("autumn", hour, i + 200));
        }
        let refs: Vec<&Event> = events.iter().collect();
        let batches = campaign_batches(&refs, 0);
        // 40 rows of one partition: 16 + 16 + 8; two partitions of 5.
        let mut sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [5, 5, 8, 16, 16]);
        for batch in &batches {
            let first = (&batch[0].campaign, record::event_secs(batch[0], 0) / 3600);
            assert!(
                batch
                    .iter()
                    .all(|e| (&e.campaign, record::event_secs(e, 0) / 3600) == first),
                "one partition per batch"
            );
        }
        let mut ids: Vec<&str> = batches
            .iter()
            .flatten()
            .map(|e| e.event_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len(),
            50,
            "every campaign event once, none without a campaign"
        );
    }
}
