//! The CQL back end (Cassandra / ScyllaDB), in a keyspace `sluice migrate`
//! created (the tables are defined by crate `sluice-cql`; see
//! docs/control.md). Revisions are allocated with a lightweight transaction
//! on `config_revision`, so two control processes never reuse one; a change
//! is then one logged batch (record rows plus its `config_changes` entry).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use prost::Message;
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlValue, Row};
use sluice_proto::v1::{ConfigChange, IpLease, Suppression, WarmupPlan, config_change::Change};

mod read;

use super::ConfigStore;
use super::cql_rows::{self as rows, CHANGES_PER_BUCKET, big, text};
use crate::ControlError;
use crate::record::{Kind, Record};

/// Suppression rows an import writes at once.
const IMPORT_CONCURRENCY: usize = 32;

/// The configuration in a Cassandra/ScyllaDB keyspace. Cheap to clone.
#[derive(Clone)]
pub struct CqlConfigStore {
    inner: Arc<Inner>,
}

struct Inner {
    session: Session,
    ks: String,
    /// Serializes this process's writers; holds the last write timestamp
    /// (microseconds) so warm-up plan rewrites are strictly ordered.
    writer: tokio::sync::Mutex<i64>,
}

impl std::fmt::Debug for CqlConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CqlConfigStore")
            .field("keyspace", &self.inner.ks)
            .finish_non_exhaustive()
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Statements of one change, for one logged batch.
#[derive(Default)]
struct Writes {
    cql: Vec<String>,
    values: Vec<Vec<CqlValue>>,
}

impl Writes {
    fn add(&mut self, cql: String, values: Vec<CqlValue>) {
        self.cql.push(cql);
        self.values.push(values);
    }
}

impl CqlConfigStore {
    /// Connects to the cluster in `config` and opens `keyspace`, which
    /// `sluice migrate` must have created.
    pub async fn connect(
        config: &sluice_cql::CqlConfig,
        keyspace: &str,
    ) -> Result<Self, ControlError> {
        let session = sluice_cql::connect(config).await?;
        Self::open(session, keyspace).await
    }

    /// Opens `keyspace` on an existing session. Fails with
    /// [`sluice_cql::CqlError::MissingTable`] (run `sluice migrate`) when a
    /// table of control is missing; creates none.
    pub async fn open(session: Session, keyspace: &str) -> Result<Self, ControlError> {
        sluice_cql::require_tables(&session, keyspace, sluice_cql::CONTROL_TABLES).await?;
        let store = Self {
            inner: Arc::new(Inner {
                session,
                ks: keyspace.to_owned(),
                writer: tokio::sync::Mutex::new(0),
            }),
        };
        let init = format!(
            "INSERT INTO {keyspace}.config_revision (name, revision) VALUES ('config', 0) IF NOT EXISTS"
        );
        store.run(&init, ()).await?;
        Ok(store)
    }

    async fn prepare(&self, cql: &str) -> Result<PreparedStatement, ControlError> {
        // The driver caches nothing here; config traffic is small, and a
        // prepared statement per call keeps the code short.
        self.inner
            .session
            .prepare(cql.to_owned())
            .await
            .map_err(|e| ControlError::cql(format!("preparing `{cql}`"), e))
    }

    async fn run(
        &self,
        cql: &str,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<scylla::response::query_result::QueryResult, ControlError> {
        let stmt = self.prepare(cql).await?;
        self.inner
            .session
            .execute_unpaged(&stmt, values)
            .await
            .map_err(|e| ControlError::cql(format!("running `{cql}`"), e))
    }

    /// Every row of a paged query.
    async fn rows<T>(
        &self,
        cql: &str,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<T>, ControlError>
    where
        T: for<'f, 'm> DeserializeRow<'f, 'm> + 'static,
    {
        let err = |e: &dyn std::fmt::Display| ControlError::cql(format!("reading `{cql}`"), e);
        let stmt = self.prepare(cql).await?;
        let pager = self
            .inner
            .session
            .execute_iter(stmt, values)
            .await
            .map_err(|e| err(&e))?;
        let stream = pager.rows_stream::<T>().map_err(|e| err(&e))?;
        stream.try_collect().await.map_err(|e| err(&e))
    }

    async fn read_revision(&self) -> Result<u64, ControlError> {
        let ks = &self.inner.ks;
        let cql = format!("SELECT revision FROM {ks}.config_revision WHERE name = 'config'");
        let found: Vec<(Option<i64>,)> = self.rows(&cql, ()).await?;
        let rev = found.first().and_then(|r| r.0).unwrap_or(0);
        Ok(u64::try_from(rev).unwrap_or(0))
    }

    /// Allocates the next revision with compare-and-set.
    async fn next_revision(&self) -> Result<u64, ControlError> {
        let ks = &self.inner.ks;
        let cas = format!(
            "UPDATE {ks}.config_revision SET revision = ? WHERE name = 'config' IF revision = ?"
        );
        let mut current = self.read_revision().await?;
        for _ in 0..32 {
            let next = current + 1;
            let result = self
                .run(&cas, (big(next), big(current)))
                .await?
                .into_rows_result()
                .map_err(|e| ControlError::cql("reading the revision update", e))?;
            let row: Row = result
                .first_row()
                .map_err(|e| ControlError::cql("reading the revision update", e))?;
            match row.columns.as_slice() {
                [Some(CqlValue::Boolean(true)), ..] => return Ok(next),
                [_, Some(CqlValue::BigInt(actual)), ..] => {
                    current = u64::try_from(*actual).unwrap_or(0)
                }
                _ => current = self.read_revision().await?,
            }
        }
        Err(ControlError::Contended)
    }

    /// Allocates a revision and writes `writes` plus the change log entry
    /// in one logged batch; `writes` gets the revision and a timestamp.
    async fn commit(
        &self,
        build: impl FnOnce(&mut Writes, u64, i64),
        change: Change,
    ) -> Result<u64, ControlError> {
        let mut last_ts = self.inner.writer.lock().await;
        let ts = now_micros().max(*last_ts + 2);
        let revision = self.next_revision().await?;
        let mut writes = Writes::default();
        build(&mut writes, revision, ts);
        let entry = ConfigChange {
            revision,
            change: Some(change),
        };
        let ks = &self.inner.ks;
        writes.add(
            format!("INSERT INTO {ks}.config_changes (bucket, revision, change) VALUES (?, ?, ?)"),
            vec![
                big(revision / CHANGES_PER_BUCKET),
                big(revision),
                CqlValue::Blob(entry.encode_to_vec()),
            ],
        );
        let mut batch = Batch::new(BatchType::Logged);
        for cql in &writes.cql {
            batch.append_statement(self.prepare(cql).await?);
        }
        self.inner
            .session
            .batch(&batch, writes.values)
            .await
            .map_err(|e| ControlError::cql(format!("writing revision {revision}"), e))?;
        *last_ts = ts;
        Ok(revision)
    }
}

fn record_writes(ks: &str, record: &Record, w: &mut Writes, rev: u64, ts: i64) {
    // Every row carries the change's timestamp, so a later delete (at a
    // later timestamp) removes it and a delete before does not shadow it.
    let with_rev = |mut v: Vec<CqlValue>| {
        v.push(big(rev));
        v.push(CqlValue::BigInt(ts));
        v
    };
    match record {
        Record::Pool(p) => w.add(
            format!(
                "INSERT INTO {ks}.config_pools (name, description, revision) VALUES (?, ?, ?) \
                 USING TIMESTAMP ?"
            ),
            with_rev(rows::pool_values(p)),
        ),
        Record::Ip(ip) => w.add(
            format!(
                "INSERT INTO {ks}.config_ips (address, pool, owner_node, warmup_plan, ehlo_name, \
                 paused, limits, site_limits, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 USING TIMESTAMP ?"
            ),
            with_rev(rows::ip_values(ip)),
        ),
        Record::WarmupPlan(plan) => plan_writes(ks, plan, w, rev, ts),
        Record::SitePolicy(s) => w.add(
            format!(
                "INSERT INTO {ks}.config_site_policies (site, messages_per_minute, \
                 messages_per_hour, messages_per_day, max_connections, new_connections_per_minute, \
                 messages_per_connection, recipients_per_transaction, require_tls, \
                 messages_per_second, burst, changed_at, revision) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ),
            with_rev(rows::site_values(s)),
        ),
        Record::Tenant(t) => w.add(
            format!(
                "INSERT INTO {ks}.config_tenants (name, sending_domains, default_pool, rate_quota, \
                 paused, api_key_hashes, smtp_users, dkim_keys, bounce_domain, trace, webhooks, \
                 smtp_dsn, tracking, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 USING TIMESTAMP ?"
            ),
            with_rev(rows::tenant_values(t)),
        ),
        Record::Provider(p) => w.add(
            format!(
                "INSERT INTO {ks}.config_providers (name, messages_per_minute, messages_per_hour, \
                 messages_per_day, max_connections, messages_per_second, burst, revision) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ),
            with_rev(rows::provider_values(p)),
        ),
    }
}

/// The table and key column of a kind's rows.
fn table_of(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Pool => ("config_pools", "name"),
        Kind::Ip => ("config_ips", "address"),
        Kind::WarmupPlan => ("config_warmup_plans", "name"),
        Kind::SitePolicy => ("config_site_policies", "site"),
        Kind::Tenant => ("config_tenants", "name"),
        Kind::Provider => ("config_providers", "name"),
    }
}

/// Removes a record's rows. A plan's delete carries the change's timestamp,
/// so it removes every day written before and none a later put writes.
fn delete_writes(ks: &str, kind: Kind, name: &str, w: &mut Writes, ts: i64) {
    let (table, key) = table_of(kind);
    w.add(
        format!("DELETE FROM {ks}.{table} USING TIMESTAMP ? WHERE {key} = ?"),
        vec![CqlValue::BigInt(ts), text(name)],
    );
}

/// A plan replaces its whole partition: the delete is timestamped just
/// before the new rows, so it removes old days but not the new ones.
fn plan_writes(ks: &str, plan: &WarmupPlan, w: &mut Writes, rev: u64, ts: i64) {
    w.add(
        format!("DELETE FROM {ks}.config_warmup_plans USING TIMESTAMP ? WHERE name = ?"),
        vec![CqlValue::BigInt(ts - 1), text(&plan.name)],
    );
    for step in &plan.steps {
        let mut values = rows::step_values(&plan.name, step);
        values.push(big(rev));
        values.push(CqlValue::BigInt(ts));
        w.add(
            format!(
                "INSERT INTO {ks}.config_warmup_plans (name, day, daily_cap, hourly_cap, site_caps, \
                 revision) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ),
            values,
        );
    }
}

#[tonic::async_trait]
impl ConfigStore for CqlConfigStore {
    async fn put(&self, record: Record) -> Result<u64, ControlError> {
        let ks = self.inner.ks.clone();
        let build = |w: &mut Writes, rev, ts| record_writes(&ks, &record, w, rev, ts);
        let change = record.clone().into_change();
        self.commit(build, change).await
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<Option<u64>, ControlError> {
        if self.get(kind, name).await?.is_none() {
            return Ok(None);
        }
        let ks = self.inner.ks.clone();
        let build = |w: &mut Writes, _rev, ts| delete_writes(&ks, kind, name, w, ts);
        self.commit(build, kind.deleted(name)).await.map(Some)
    }

    async fn leases(&self) -> Result<HashMap<String, IpLease>, ControlError> {
        self.unexpired_leases().await
    }

    async fn get(&self, kind: Kind, name: &str) -> Result<Option<Record>, ControlError> {
        Ok(self.select(kind, Some(name)).await?.into_iter().next())
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Record>, ControlError> {
        self.select(kind, None).await
    }

    async fn add_suppression(&self, s: Suppression) -> Result<u64, ControlError> {
        let ks = self.inner.ks.clone();
        let at = CqlValue::Timestamp(CqlTimestamp(rows::timestamp_millis(s.created_at.as_ref())));
        let (tenant, address, reason) = (text(&s.tenant), text(&s.address), text(&s.reason));
        let build = |w: &mut Writes, rev, _ts| {
            w.add(
                format!(
                    "INSERT INTO {ks}.config_suppressions (tenant, address, reason, created_at, \
                     revision) VALUES (?, ?, ?, ?, ?)"
                ),
                vec![
                    tenant.clone(),
                    address.clone(),
                    reason.clone(),
                    at.clone(),
                    big(rev),
                ],
            );
            w.add(
                format!(
                    "INSERT INTO {ks}.suppressions (tenant, address, reason, created_at, message_id) \
                     VALUES (?, ?, ?, ?, '')"
                ),
                vec![tenant, address, reason, at],
            );
        };
        self.commit(build, Change::SuppressionAdded(s)).await
    }

    async fn import_suppressions(&self, entries: Vec<Suppression>) -> Result<(), ControlError> {
        let ks = &self.inner.ks;
        let listing = self
            .prepare(&format!(
                "INSERT INTO {ks}.config_suppressions (tenant, address, reason, created_at, \
                 revision) VALUES (?, ?, ?, ?, 0)"
            ))
            .await?;
        let lookup = self
            .prepare(&format!(
                "INSERT INTO {ks}.suppressions (tenant, address, reason, created_at, message_id) \
                 VALUES (?, ?, ?, ?, '')"
            ))
            .await?;
        let session = &self.inner.session;
        let write = |s: Suppression| {
            let (listing, lookup) = (&listing, &lookup);
            async move {
                let at = CqlTimestamp(rows::timestamp_millis(s.created_at.as_ref()));
                let values = (&s.tenant, &s.address, &s.reason, at);
                let err = |e| ControlError::cql(format!("importing suppression {}", s.address), e);
                session
                    .execute_unpaged(listing, values)
                    .await
                    .map_err(err)?;
                session.execute_unpaged(lookup, values).await.map_err(err)?;
                Ok::<_, ControlError>(())
            }
        };
        futures::stream::iter(entries.into_iter().map(write))
            .buffer_unordered(IMPORT_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    async fn remove_suppression(
        &self,
        tenant: &str,
        address: &str,
    ) -> Result<Option<u64>, ControlError> {
        let Some(old) = self.get_suppression(tenant, address).await? else {
            return Ok(None);
        };
        let ks = self.inner.ks.clone();
        let build = |w: &mut Writes, _rev, _ts| {
            for table in ["config_suppressions", "suppressions"] {
                w.add(
                    format!("DELETE FROM {ks}.{table} WHERE tenant = ? AND address = ?"),
                    vec![text(tenant), text(address)],
                );
            }
        };
        self.commit(build, Change::SuppressionRemoved(old))
            .await
            .map(Some)
    }

    async fn list_suppressions(
        &self,
        tenant: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Suppression>, ControlError> {
        let ks = &self.inner.ks;
        let cql = format!(
            "SELECT tenant, address, reason, created_at FROM {ks}.config_suppressions \
             WHERE tenant = ? AND address > ? LIMIT ?"
        );
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let found: Vec<rows::SuppressionRow> = self.rows(&cql, (tenant, after, limit)).await?;
        Ok(read::map(found, rows::suppression_from))
    }

    async fn revision(&self) -> Result<u64, ControlError> {
        self.read_revision().await
    }

    async fn changes_after(
        &self,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<ConfigChange>, ControlError> {
        let head = self.read_revision().await?;
        let ks = &self.inner.ks;
        let cql = format!(
            "SELECT change FROM {ks}.config_changes WHERE bucket = ? AND revision > ? LIMIT ?"
        );
        let mut out = Vec::new();
        let mut bucket = revision.saturating_add(1) / CHANGES_PER_BUCKET;
        while out.len() < limit && bucket <= head / CHANGES_PER_BUCKET {
            let want = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
            let found: Vec<(Vec<u8>,)> =
                self.rows(&cql, (big(bucket), big(revision), want)).await?;
            for (bytes,) in found {
                let change = ConfigChange::decode(bytes.as_slice())
                    .map_err(|e| ControlError::Corrupt(format!("change log entry: {e}")))?;
                out.push(change);
            }
            bucket += 1;
        }
        Ok(out)
    }
}
