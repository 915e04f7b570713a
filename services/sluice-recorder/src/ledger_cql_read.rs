//! The read side of [`CqlLedger`]: reads of the Query service and the
//! reputation scorer, and the reputation upserts.

use std::collections::{BTreeMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use prost::Message;
use scylla::value::{Counter, CqlTimestamp};
use sluice_proto::v1::{Event, ReputationRow, TenantReputationRow};

use crate::RecorderError;
use crate::ledger_cql::CqlLedger;
use crate::record::{COLUMNS, Deltas, LEGACY_COLUMNS};

type C = Option<Counter>;
type Counters8 = (C, C, C, C, C, C, C, C);
type HourlyRow = (String, String, C, C, C, C, C, C, C, C);
type B = Option<i64>;
type PartRow = (String, String, B, B, B, B, B, B, B, B, B, B, B);

/// The counters of a row written before version 12 (the first
/// [`LEGACY_COLUMNS`] columns; the rest are 0).
fn deltas_of((a, b, c, d, e, f, g, h): Counters8) -> Deltas {
    let mut deltas = Deltas::default();
    deltas.0[..LEGACY_COLUMNS]
        .copy_from_slice(&[a, b, c, d, e, f, g, h].map(|v| v.map_or(0, |c| c.0)));
    deltas
}

fn ts(at: CqlTimestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.0.div_euclid(1000),
        nanos: i32::try_from(at.0.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

fn ms(at: Option<&prost_types::Timestamp>) -> CqlTimestamp {
    CqlTimestamp(at.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000)))
}

/// Concurrent suppression lookups of one call.
const SUPPRESSION_LOOKUPS: usize = 32;

impl CqlLedger {
    /// Which of `addresses` (stored forms) have a suppression row of
    /// `tenant`: one prepared point lookup per address (the partition key is
    /// `(tenant, address)`), up to [`SUPPRESSION_LOOKUPS`] at a time.
    pub async fn present_suppressions(
        &self,
        tenant: &str,
        addresses: &[String],
    ) -> Result<HashSet<String>, RecorderError> {
        let lookups: Vec<_> = addresses
            .iter()
            .map(|address| self.suppression_row(tenant, address))
            .collect();
        let found: Vec<Option<String>> = futures::stream::iter(lookups)
            .buffer_unordered(SUPPRESSION_LOOKUPS)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// `Some(address)` when `(tenant, address)` has a suppression row.
    async fn suppression_row(
        &self,
        tenant: &str,
        address: &str,
    ) -> Result<Option<String>, RecorderError> {
        let rows = self
            .session
            .execute_unpaged(&self.select_suppression, (tenant, address))
            .await
            .map_err(|e| RecorderError::cql("reading suppressions", e))?
            .into_rows_result()
            .map_err(|e| RecorderError::cql("reading suppressions", e))?;
        Ok((rows.rows_num() > 0).then(|| address.to_owned()))
    }

    async fn collect<R>(
        &self,
        cql: String,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<R>, RecorderError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + Send + 'static,
    {
        let pager = self
            .session
            .query_iter(cql.clone(), values)
            .await
            .map_err(|e| RecorderError::cql(format!("running `{cql}`"), e))?;
        pager
            .rows_stream::<R>()
            .map_err(|e| RecorderError::cql(format!("typing `{cql}`"), e))?
            .try_collect()
            .await
            .map_err(|e| RecorderError::cql(format!("reading `{cql}`"), e))
    }

    /// Every stored event of a message, oldest first.
    pub async fn history(&self, message_id: &str) -> Result<Vec<Event>, RecorderError> {
        let cql = format!(
            "SELECT event FROM {}.message_events WHERE message_id = ?",
            self.ks
        );
        let rows: Vec<(Vec<u8>,)> = self.collect(cql, (message_id,)).await?;
        rows.into_iter()
            .map(|(bytes,)| Event::decode(bytes.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|e| RecorderError::Corrupt(format!("stored event of {message_id}: {e}")))
    }

    /// Daily counter rows `(detail, deltas)` of one partition: the sum of
    /// its parts and of the counter rows written before version 12.
    pub async fn daily(
        &self,
        scope: &str,
        key: &str,
        day: &str,
    ) -> Result<Vec<(String, Deltas)>, RecorderError> {
        let rows = self.counters(scope, key, day, false).await?;
        Ok(rows.into_iter().map(|(_, detail, d)| (detail, d)).collect())
    }

    /// Hourly counter rows `(hour, detail, deltas)` of one partition, summed
    /// as [`Self::daily`] sums them.
    pub async fn hourly(
        &self,
        scope: &str,
        key: &str,
        day: &str,
    ) -> Result<Vec<(String, String, Deltas)>, RecorderError> {
        self.counters(scope, key, day, true).await
    }

    /// `(hour or "", detail, deltas)` of one counter partition, in
    /// clustering order.
    async fn counters(
        &self,
        scope: &str,
        key: &str,
        day: &str,
        hourly: bool,
    ) -> Result<Vec<(String, String, Deltas)>, RecorderError> {
        // Daily rows have no hour: their (text) key column fills the slot
        // and is dropped below.
        let (table, hour) = if hourly {
            ("hourly", "hour")
        } else {
            ("daily", "key")
        };
        let (ks, columns) = (&self.ks, COLUMNS.join(", "));
        let filter = "WHERE scope = ? AND key = ? AND day = ?";
        let mut sums: BTreeMap<(String, String), Deltas> = BTreeMap::new();
        let legacy_columns = COLUMNS[..LEGACY_COLUMNS].join(", ");
        let legacy =
            format!("SELECT {hour}, detail, {legacy_columns} FROM {ks}.{table}_counters {filter}");
        let rows: Vec<HourlyRow> = self.collect(legacy, (scope, key, day)).await?;
        for (hour, detail, a, b, c, d, e, f, g, h) in rows {
            let deltas = deltas_of((a, b, c, d, e, f, g, h));
            sums.entry((hour, detail)).or_default().add(&deltas);
        }
        let parts =
            format!("SELECT {hour}, detail, {columns} FROM {ks}.{table}_counter_parts {filter}");
        let rows: Vec<PartRow> = self.collect(parts, (scope, key, day)).await?;
        for (hour, detail, a, b, c, d, e, f, g, h, i, j, k) in rows {
            let deltas = Deltas([a, b, c, d, e, f, g, h, i, j, k].map(|v| v.unwrap_or(0)));
            sums.entry((hour, detail)).or_default().add(&deltas);
        }
        Ok(sums
            .into_iter()
            .map(|((hour, detail), deltas)| {
                let hour = if hourly { hour } else { String::new() };
                (hour, detail, deltas)
            })
            .collect())
    }

    /// Every (source IP, site) that has a reputation row.
    pub async fn known_paths(&self) -> Result<Vec<(String, String)>, RecorderError> {
        let cql = format!("SELECT source_ip, site FROM {}.path_reputation", self.ks);
        self.collect(cql, ()).await
    }

    /// Every tenant that has a reputation row.
    pub async fn known_tenants(&self) -> Result<Vec<String>, RecorderError> {
        let cql = format!("SELECT tenant FROM {}.tenant_reputation", self.ks);
        let rows: Vec<(String,)> = self.collect(cql, ()).await?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }

    /// Upserts one (source IP, site) reputation row.
    pub async fn put_path_reputation(&self, r: &ReputationRow) -> Result<(), RecorderError> {
        let cql = format!(
            "INSERT INTO {}.path_reputation (source_ip, site, sent, delivery_rate, deferral_rate, \
             hard_bounce_rate, complaint_rate, signal, window_hours, computed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self.ks
        );
        let values = (
            &r.source_ip,
            &r.site,
            i64::try_from(r.sent).unwrap_or(i64::MAX),
            r.delivery_rate,
            r.deferral_rate,
            r.hard_bounce_rate,
            r.complaint_rate,
            &r.signal,
            i32::try_from(r.window_hours).unwrap_or(i32::MAX),
            ms(r.computed_at.as_ref()),
        );
        self.session
            .query_unpaged(cql, values)
            .await
            .map(drop)
            .map_err(|e| RecorderError::cql("writing path_reputation", e))
    }

    /// Upserts one tenant reputation row.
    pub async fn put_tenant_reputation(
        &self,
        r: &TenantReputationRow,
    ) -> Result<(), RecorderError> {
        let cql = format!(
            "INSERT INTO {}.tenant_reputation (tenant, sent, delivery_rate, deferral_rate, \
             hard_bounce_rate, complaint_rate, signal, window_hours, computed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self.ks
        );
        let values = (
            &r.tenant,
            i64::try_from(r.sent).unwrap_or(i64::MAX),
            r.delivery_rate,
            r.deferral_rate,
            r.hard_bounce_rate,
            r.complaint_rate,
            &r.signal,
            i32::try_from(r.window_hours).unwrap_or(i32::MAX),
            ms(r.computed_at.as_ref()),
        );
        self.session
            .query_unpaged(cql, values)
            .await
            .map(drop)
            .map_err(|e| RecorderError::cql("writing tenant_reputation", e))
    }

    /// Path reputation rows, filtered by IP and site when not empty.
    pub async fn path_reputation(
        &self,
        ip: &str,
        site: &str,
    ) -> Result<Vec<ReputationRow>, RecorderError> {
        type Row = (
            String,
            String,
            Option<i64>,
            f64,
            f64,
            f64,
            f64,
            String,
            i32,
            CqlTimestamp,
        );
        let select = format!(
            "SELECT source_ip, site, sent, delivery_rate, deferral_rate, hard_bounce_rate, \
             complaint_rate, signal, window_hours, computed_at FROM {}.path_reputation",
            self.ks
        );
        let rows: Vec<Row> = if ip.is_empty() {
            self.collect(select, ()).await?
        } else {
            self.collect(format!("{select} WHERE source_ip = ?"), (ip,))
                .await?
        };
        Ok(rows
            .into_iter()
            .filter(|r| site.is_empty() || r.1 == site)
            .map(
                |(source_ip, site, sent, d, f, h, c, signal, w, at)| ReputationRow {
                    source_ip,
                    site,
                    delivery_rate: d,
                    deferral_rate: f,
                    hard_bounce_rate: h,
                    complaint_rate: c,
                    signal,
                    computed_at: Some(ts(at)),
                    sent: sent.map_or(0, |s| u64::try_from(s).unwrap_or(0)),
                    window_hours: u32::try_from(w).unwrap_or(0),
                },
            )
            .collect())
    }

    /// Tenant reputation rows, filtered by tenant when not empty.
    pub async fn tenant_reputation(
        &self,
        tenant: &str,
    ) -> Result<Vec<TenantReputationRow>, RecorderError> {
        type Row = (
            String,
            Option<i64>,
            f64,
            f64,
            f64,
            f64,
            String,
            i32,
            CqlTimestamp,
        );
        let select = format!(
            "SELECT tenant, sent, delivery_rate, deferral_rate, hard_bounce_rate, \
             complaint_rate, signal, window_hours, computed_at FROM {}.tenant_reputation",
            self.ks
        );
        let rows: Vec<Row> = if tenant.is_empty() {
            self.collect(select, ()).await?
        } else {
            self.collect(format!("{select} WHERE tenant = ?"), (tenant,))
                .await?
        };
        Ok(rows
            .into_iter()
            .map(
                |(tenant, sent, d, f, h, c, signal, w, at)| TenantReputationRow {
                    tenant,
                    delivery_rate: d,
                    deferral_rate: f,
                    hard_bounce_rate: h,
                    complaint_rate: c,
                    signal,
                    computed_at: Some(ts(at)),
                    sent: sent.map_or(0, |s| u64::try_from(s).unwrap_or(0)),
                    window_hours: u32::try_from(w).unwrap_or(0),
                },
            )
            .collect())
    }
}
