//! Reads of the embedded ledger, and its [`Ledger`] implementation: every
//! call runs on tokio's blocking pool.

use std::collections::{BTreeMap, HashSet};

use prost::Message;
use sluice_proto::v1::{Event, ReputationRow, TenantReputationRow, WebhookAttempt};

use crate::ledger::Claim;
use crate::ledger::{Ledger, Res, lookup_forms, pick_suppressed};
use crate::ledger_embedded::{
    EmbeddedLedger, after_table, counter_partition, decode, fjall_err, now_ms, parts_partition,
    suppression_key, table,
};
use crate::ledger_keys::{self as keys, Key, Reader};
use crate::record::{CounterKey, Deltas, Granularity, Part, Position};

type Pairs = Vec<(fjall::Slice, fjall::Slice)>;

impl EmbeddedLedger {
    /// Every (key, value) whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8]) -> Res<Pairs> {
        self.inner
            .rows
            .prefix(prefix)
            .map(|g| g.into_inner().map_err(fjall_err("scanning rows")))
            .collect()
    }

    fn history_blocking(&self, message_id: &str) -> Res<Vec<Event>> {
        let now = now_ms();
        let prefix = Key::new().raw(&[table::EVENTS]).s(message_id);
        let mut events = Vec::new();
        for (_, value) in self.scan(&prefix.0)? {
            if let Some(bytes) = keys::live(&value, now)? {
                events.push(decode(bytes, "event")?);
            }
        }
        Ok(events)
    }

    /// Counter rows of a partition: (hour or "", detail, deltas), summing
    /// the rows written before parts and the parts of every events partition.
    fn counters_blocking(
        &self,
        granularity: Granularity,
        (scope, key, day): (&str, &str, &str),
    ) -> Res<Vec<(String, String, Deltas)>> {
        let mut sums: BTreeMap<(String, String), Deltas> = BTreeMap::new();
        let legacy = counter_partition(granularity, scope, key, day);
        self.sum_rows(&legacy, granularity, &mut sums, |r, v| {
            Ok((r.rest()?, keys::decode_deltas(v)?))
        })?;
        let parts = parts_partition(granularity, scope, key, day);
        self.sum_rows(&parts, granularity, &mut sums, |r, v| {
            Ok((r.s()?, keys::decode_part(v)?.deltas))
        })?;
        Ok(sums
            .into_iter()
            .map(|((hour, detail), deltas)| (hour, detail, deltas))
            .collect())
    }

    /// Adds every row under `prefix` to `sums` by (hour, detail); `row`
    /// reads the detail (what follows the hour in the key) and the deltas.
    fn sum_rows(
        &self,
        prefix: &Key,
        granularity: Granularity,
        sums: &mut BTreeMap<(String, String), Deltas>,
        row: impl Fn(&mut Reader<'_>, &[u8]) -> Res<(String, Deltas)>,
    ) -> Res<()> {
        for (k, v) in self.scan(&prefix.0)? {
            let mut r = after_table(&k);
            let _partition = (r.s()?, r.s()?, r.s()?);
            let hour = match granularity {
                Granularity::Daily => String::new(),
                Granularity::Hourly => r.s()?,
            };
            let (detail, deltas) = row(&mut r, &v)?;
            sums.entry((hour, detail)).or_default().add(&deltas);
        }
        Ok(())
    }

    fn paths_blocking(&self, ip: &str, site: &str) -> Res<Vec<ReputationRow>> {
        let mut prefix = Key::new().raw(&[table::PATHS]);
        if !ip.is_empty() {
            prefix = prefix.s(ip);
        }
        let mut rows = Vec::new();
        for (_, v) in self.scan(&prefix.0)? {
            let row: ReputationRow = decode(&v, "path reputation")?;
            if site.is_empty() || row.site == site {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    fn tenants_blocking(&self, tenant: &str) -> Res<Vec<TenantReputationRow>> {
        let mut prefix = Key::new().raw(&[table::TENANTS]);
        if !tenant.is_empty() {
            prefix = prefix.raw(tenant.as_bytes());
        }
        let mut rows = Vec::new();
        for (_, v) in self.scan(&prefix.0)? {
            let row: TenantReputationRow = decode(&v, "tenant reputation")?;
            if tenant.is_empty() || row.tenant == tenant {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    fn known_paths_blocking(&self) -> Res<Vec<(String, String)>> {
        let mut paths = Vec::new();
        for (k, _) in self.scan(&[table::PATHS])? {
            let mut r = after_table(&k);
            paths.push((r.s()?, r.rest()?));
        }
        Ok(paths)
    }

    /// Which of `addresses` (stored forms) have a suppression row of
    /// `tenant`: one point read each.
    pub(crate) fn present_suppressions_blocking(
        &self,
        tenant: &str,
        addresses: &[String],
    ) -> Res<HashSet<String>> {
        let mut found = HashSet::new();
        for address in addresses {
            let key = suppression_key(tenant, address);
            let row = self.inner.rows.get(&key.0);
            if row.map_err(fjall_err("reading a suppression"))?.is_some() {
                found.insert(address.clone());
            }
        }
        Ok(found)
    }

    fn known_tenants_blocking(&self) -> Res<Vec<String>> {
        let rows = self.scan(&[table::TENANTS])?;
        rows.iter().map(|(k, _)| after_table(k).rest()).collect()
    }
}

/// Timestamps are kept to the millisecond, as Cassandra keeps them.
fn to_millis(at: &mut Option<prost_types::Timestamp>) {
    if let Some(t) = at {
        t.nanos -= t.nanos.rem_euclid(1_000_000);
    }
}

impl Ledger for EmbeddedLedger {
    async fn write_rows(&self, events: &[&Event], now_secs: i64) -> Res<()> {
        let events: Vec<Event> = events.iter().map(|e| (*e).clone()).collect();
        self.blocking(move |l| l.write_rows_blocking(&events, now_secs))
            .await
    }
    async fn claim(&self, claims: &[(&Event, Position)]) -> Res<Vec<Claim>> {
        let claims: Vec<(Event, Position)> =
            claims.iter().map(|(e, p)| ((*e).clone(), *p)).collect();
        self.blocking(move |l| l.claim_blocking(&claims)).await
    }
    async fn parts(&self, keys: &[(CounterKey, i32)]) -> Res<Vec<Part>> {
        let keys = keys.to_vec();
        self.blocking(move |l| l.parts_blocking(&keys)).await
    }
    async fn put_parts(&self, parts: &[(CounterKey, i32, Part)]) -> Res<()> {
        let parts = parts.to_vec();
        self.blocking(move |l| l.put_parts_blocking(&parts)).await
    }
    async fn history(&self, message_id: &str) -> Res<Vec<Event>> {
        let id = message_id.to_owned();
        self.blocking(move |l| l.history_blocking(&id)).await
    }
    async fn daily(&self, scope: &str, key: &str, day: &str) -> Res<Vec<(String, Deltas)>> {
        let (s, k, d) = (scope.to_owned(), key.to_owned(), day.to_owned());
        let rows = self
            .blocking(move |l| l.counters_blocking(Granularity::Daily, (&s, &k, &d)))
            .await?;
        Ok(rows.into_iter().map(|(_, detail, d)| (detail, d)).collect())
    }
    async fn hourly(
        &self,
        scope: &str,
        key: &str,
        day: &str,
    ) -> Res<Vec<(String, String, Deltas)>> {
        let (s, k, d) = (scope.to_owned(), key.to_owned(), day.to_owned());
        self.blocking(move |l| l.counters_blocking(Granularity::Hourly, (&s, &k, &d)))
            .await
    }
    async fn known_paths(&self) -> Res<Vec<(String, String)>> {
        self.blocking(|l| l.known_paths_blocking()).await
    }
    async fn known_tenants(&self) -> Res<Vec<String>> {
        self.blocking(|l| l.known_tenants_blocking()).await
    }
    async fn put_path_reputation(&self, row: &ReputationRow) -> Res<()> {
        let mut row = row.clone();
        to_millis(&mut row.computed_at);
        let key = Key::new()
            .raw(&[table::PATHS])
            .s(&row.source_ip)
            .raw(row.site.as_bytes());
        self.blocking(move |l| l.put_blocking(key, row.encode_to_vec()))
            .await
    }
    async fn put_tenant_reputation(&self, row: &TenantReputationRow) -> Res<()> {
        let mut row = row.clone();
        to_millis(&mut row.computed_at);
        let key = Key::new().raw(&[table::TENANTS]).raw(row.tenant.as_bytes());
        self.blocking(move |l| l.put_blocking(key, row.encode_to_vec()))
            .await
    }
    async fn path_reputation(&self, ip: &str, site: &str) -> Res<Vec<ReputationRow>> {
        let (ip, site) = (ip.to_owned(), site.to_owned());
        self.blocking(move |l| l.paths_blocking(&ip, &site)).await
    }
    async fn tenant_reputation(&self, tenant: &str) -> Res<Vec<TenantReputationRow>> {
        let tenant = tenant.to_owned();
        self.blocking(move |l| l.tenants_blocking(&tenant)).await
    }
    async fn suppressed(&self, tenant: &str, addresses: &[String]) -> Res<Vec<String>> {
        let (tenant, forms) = (tenant.to_owned(), lookup_forms(addresses));
        let found = self
            .blocking(move |l| l.present_suppressions_blocking(&tenant, &forms))
            .await?;
        Ok(pick_suppressed(addresses, &found))
    }
    async fn put_webhook_attempts(&self, attempts: &[WebhookAttempt]) -> Res<()> {
        let attempts = attempts.to_vec();
        self.blocking(move |l| l.put_webhook_attempts_blocking(&attempts))
            .await
    }
    async fn webhook_attempts(
        &self,
        tenant: &str,
        webhook_id: &str,
        limit: usize,
    ) -> Res<Vec<WebhookAttempt>> {
        let (tenant, id) = (tenant.to_owned(), webhook_id.to_owned());
        self.blocking(move |l| l.webhook_attempts_blocking(&tenant, &id, limit))
            .await
    }
}
