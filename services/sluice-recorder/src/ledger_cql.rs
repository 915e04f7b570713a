//! [`CqlLedger`], the ScyllaDB/Cassandra back end of the recorder's
//! [`Ledger`](crate::Ledger): prepared statements and one method per write.
//! Reads live in `ledger_cql_read.rs`. The tables are created by
//! `sluice migrate` (crate `sluice-cql`), never here.

use prost::Message;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{Counter, CqlTimestamp};
use sluice_proto::v1::Event;

use crate::RecorderError;
use crate::ledger::Claim;
use crate::record::{self, COLUMNS, CounterKey, Deltas, Granularity};

/// The recorder's ledger in a migrated keyspace: the session and the
/// prepared statements.
pub struct CqlLedger {
    pub(crate) session: Session,
    pub(crate) ks: String,
    status_ttl: i32,
    dedup_ttl: i32,
    insert_event: PreparedStatement,
    insert_campaign: PreparedStatement,
    insert_suppression: PreparedStatement,
    list_suppression: PreparedStatement,
    pub(crate) select_suppression: PreparedStatement,
    claim: PreparedStatement,
    bump_daily: PreparedStatement,
    bump_hourly: PreparedStatement,
}

fn days_to_secs(days: u32) -> i32 {
    i32::try_from(u64::from(days) * 86_400).unwrap_or(i32::MAX)
}

fn counter_sets() -> String {
    COLUMNS
        .iter()
        .map(|c| format!("{c} = {c} + ?"))
        .collect::<Vec<_>>()
        .join(", ")
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
        let sets = counter_sets();
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
            claim: prep(format!(
                "INSERT INTO {ks}.event_dedup (message_id, attempt, kind, event_id) \
                 VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
            ))
            .await?,
            bump_daily: prep(format!(
                "UPDATE {ks}.daily_counters SET {sets} WHERE scope = ? AND key = ? AND day = ? AND detail = ?"
            ))
            .await?,
            bump_hourly: prep(format!(
                "UPDATE {ks}.hourly_counters SET {sets} \
                 WHERE scope = ? AND key = ? AND day = ? AND hour = ? AND detail = ?"
            ))
            .await?,
            session,
            ks: ks.to_owned(),
            status_ttl: days_to_secs(status_ttl_days),
            dedup_ttl: days_to_secs(dedup_ttl_days),
        })
    }

    /// Writes the idempotent rows of an event: its history row, its campaign
    /// row and the suppression it causes. Safe to repeat.
    pub async fn write_rows(&self, event: &Event, now_secs: i64) -> Result<(), RecorderError> {
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
        if !event.campaign.is_empty() {
            let hour = crate::time::hour_of(record::event_secs(event, now_secs));
            let values = (
                &event.campaign,
                hour,
                at,
                &event.event_id,
                &event.message_id,
                event.kind,
                &event.tenant,
                &event.recipient,
                &event.source_ip,
                &event.site,
                self.status_ttl,
            );
            self.session
                .execute_unpaged(&self.insert_campaign, values)
                .await
                .map_err(|e| RecorderError::cql("writing campaign_events", e))?;
        }
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

    /// Claims an event's de-duplication key with `IF NOT EXISTS`.
    ///
    /// `retrying` says an earlier claim of this very event failed with an
    /// unknown outcome: then a claim already holding this event's id is ours.
    pub async fn claim(&self, event: &Event, retrying: bool) -> Result<Claim, RecorderError> {
        let attempt = i32::try_from(event.attempt).unwrap_or(i32::MAX);
        let values = (
            &event.message_id,
            attempt,
            event.kind,
            &event.event_id,
            self.dedup_ttl,
        );
        let rows = self
            .session
            .execute_unpaged(&self.claim, values)
            .await
            .map_err(|e| RecorderError::cql("claiming event_dedup", e))?
            .into_rows_result()
            .map_err(|e| RecorderError::cql("reading the claim's result", e))?;
        let holder = rows.column_specs().get_by_name("event_id").map(|(i, _)| i);
        let row = rows
            .rows::<scylla::value::Row>()
            .map_err(|e| RecorderError::cql("reading the claim's result", e))?
            .next()
            .ok_or_else(|| RecorderError::cql("claiming event_dedup", "no [applied] row"))?
            .map_err(|e| RecorderError::cql("reading the claim's result", e))?;
        let cell = |i: usize| row.columns.get(i).and_then(Option::as_ref);
        if cell(0).and_then(|v| v.as_boolean()) == Some(true) {
            return Ok(Claim::New);
        }
        let held_by = holder.and_then(cell).and_then(|v| v.as_text());
        match held_by {
            Some(holder) if *holder == event.event_id && retrying => Ok(Claim::New),
            Some(holder) if *holder != event.event_id => Ok(Claim::Repeat),
            _ => Ok(Claim::Duplicate),
        }
    }

    /// Adds `deltas` to one counter row. Not idempotent: see docs/recorder.md.
    pub async fn bump(&self, key: &CounterKey, deltas: &Deltas) -> Result<(), RecorderError> {
        let [a, b, c, d, e, f, g, h] = deltas.0.map(Counter);
        let (scope, k, day) = (key.scope, &key.key, &key.day);
        let result = match key.granularity {
            Granularity::Daily => {
                let values = (a, b, c, d, e, f, g, h, scope, k, day, &key.detail);
                self.session.execute_unpaged(&self.bump_daily, values).await
            }
            Granularity::Hourly => {
                let values = (
                    a,
                    b,
                    c,
                    d,
                    e,
                    f,
                    g,
                    h,
                    scope,
                    k,
                    day,
                    &key.hour,
                    &key.detail,
                );
                self.session
                    .execute_unpaged(&self.bump_hourly, values)
                    .await
            }
        };
        result
            .map(drop)
            .map_err(|e| RecorderError::cql("updating counters", e))
    }
}
