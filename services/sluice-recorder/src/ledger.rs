//! The recorder's ledger as a trait: exactly what the writer, the scorer and
//! the Query service need. Two back ends: [`CqlLedger`] (CQL on
//! ScyllaDB/Cassandra) and [`EmbeddedLedger`] (fjall in a data directory).
//! [`AnyLedger`] is either, chosen at run time; the rest of the recorder
//! holds an `AnyLedger`.

use std::collections::HashSet;
use std::future::Future;

use sluice_proto::v1::{Event, ReputationRow, TenantReputationRow, WebhookAttempt};

use crate::RecorderError;
use crate::ledger_cql::CqlLedger;
use crate::ledger_embedded::EmbeddedLedger;
use crate::record::{CounterKey, Deltas, Part, Position, suppression_address};

/// Result of a ledger call.
pub type Res<T> = Result<T, RecorderError>;

/// What a de-duplication claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First time this (message id, attempt, kind) is seen: count it.
    New,
    /// This very event (same event id) was seen before: do not count it again.
    Duplicate,
    /// Another event (a different event id) holds the key: the outcome
    /// happened twice (for `delivered`: the message was delivered twice).
    /// Not counted again either.
    Repeat,
}

/// What a stored claim `(event id, position)` means for `event` at `at`.
pub(crate) fn decide_claim(
    stored: Option<&(String, Option<Position>)>,
    event: &Event,
    at: Position,
) -> Claim {
    match stored {
        None => Claim::New,
        Some((_, Some(held))) if *held == at => Claim::New,
        Some((id, _)) if *id == event.event_id => Claim::Duplicate,
        Some(_) => Claim::Repeat,
    }
}

/// Where the recorder keeps events, claims, counters and reputation.
///
/// Writes are durable when their future resolves. Methods return `Send`
/// futures, so callers may spawn them.
pub trait Ledger: Send + Sync + 'static {
    /// Writes the idempotent rows of every event: its history row (kept
    /// `status_ttl_days`), its campaign row and the suppression it causes.
    /// Safe to repeat.
    fn write_rows(&self, events: &[&Event], now_secs: i64) -> impl Future<Output = Res<()>> + Send;
    /// Claims each event's de-duplication key ([`crate::record::dedup_key`]) for the
    /// record at its position, with no lightweight transaction: a key with no
    /// live claim, or one the same record made (a replay), is
    /// [`Claim::New`]; one the same event made from another record is
    /// [`Claim::Duplicate`]; one another event made is [`Claim::Repeat`].
    /// Exact because one consumer at a time reads a partition and a message's
    /// events share one: `claims` holds each key at most once.
    fn claim(&self, claims: &[(&Event, Position)]) -> impl Future<Output = Res<Vec<Claim>>> + Send;
    /// The stored part of each (counter row, events partition);
    /// [`Part::default`] where there is none.
    fn parts(&self, keys: &[(CounterKey, i32)]) -> impl Future<Output = Res<Vec<Part>>> + Send;
    /// Stores each part, replacing the stored one unless that one is further
    /// along (a larger `through`): a late write never undoes a newer one.
    fn put_parts(&self, parts: &[(CounterKey, i32, Part)]) -> impl Future<Output = Res<()>> + Send;
    /// Every live event of a message, oldest first (by event time, then id).
    fn history(&self, message_id: &str) -> impl Future<Output = Res<Vec<Event>>> + Send;
    /// Daily counter rows `(detail, deltas)` of `(scope, key, day)`.
    fn daily(
        &self,
        scope: &str,
        key: &str,
        day: &str,
    ) -> impl Future<Output = Res<Vec<(String, Deltas)>>> + Send;
    /// Hourly counter rows `(hour, detail, deltas)` of `(scope, key, day)`.
    fn hourly(
        &self,
        scope: &str,
        key: &str,
        day: &str,
    ) -> impl Future<Output = Res<Vec<(String, String, Deltas)>>> + Send;
    /// Every (source IP, site) that has a reputation row.
    fn known_paths(&self) -> impl Future<Output = Res<Vec<(String, String)>>> + Send;
    /// Every tenant that has a reputation row.
    fn known_tenants(&self) -> impl Future<Output = Res<Vec<String>>> + Send;
    /// Upserts one (source IP, site) reputation row.
    fn put_path_reputation(&self, row: &ReputationRow) -> impl Future<Output = Res<()>> + Send;
    /// Upserts one tenant reputation row.
    fn put_tenant_reputation(
        &self,
        row: &TenantReputationRow,
    ) -> impl Future<Output = Res<()>> + Send;
    /// Path reputation rows, filtered by IP and by site when not empty.
    fn path_reputation(
        &self,
        ip: &str,
        site: &str,
    ) -> impl Future<Output = Res<Vec<ReputationRow>>> + Send;
    /// Tenant reputation rows, filtered by tenant when not empty.
    fn tenant_reputation(
        &self,
        tenant: &str,
    ) -> impl Future<Output = Res<Vec<TenantReputationRow>>> + Send;
    /// Which of `addresses` `tenant` has a suppression row for (a hard
    /// bounce, a complaint or an unsubscribe), compared lowercase. Returns
    /// them as spelled in `addresses`, in their order, each once.
    fn suppressed(
        &self,
        tenant: &str,
        addresses: &[String],
    ) -> impl Future<Output = Res<Vec<String>>> + Send;
    /// Stores webhook delivery attempts (the delivery log), kept
    /// `status_ttl_days`; an attempt stored again overwrites itself.
    fn put_webhook_attempts(
        &self,
        attempts: &[WebhookAttempt],
    ) -> impl Future<Output = Res<()>> + Send;
    /// Up to `limit` attempts of one webhook, newest first, from the last
    /// [`crate::webhook_log::DAYS`] days.
    fn webhook_attempts(
        &self,
        tenant: &str,
        webhook_id: &str,
        limit: usize,
    ) -> impl Future<Output = Res<Vec<WebhookAttempt>>> + Send;
}

/// The stored forms to look up for `addresses`, each once: the lowercase
/// form suppressions are written in, and the address verbatim when it
/// differs (rows written before addresses were stored lowercase).
pub(crate) fn lookup_forms(addresses: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    addresses
        .iter()
        .flat_map(|a| [suppression_address(a), a.clone()])
        .filter(|form| !form.is_empty() && seen.insert(form.clone()))
        .collect()
}

/// The addresses (as asked, in order, each once) whose lookup forms are
/// among the `found` stored forms.
pub(crate) fn pick_suppressed(addresses: &[String], found: &HashSet<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    addresses
        .iter()
        .filter(|a| found.contains(&suppression_address(a)) || found.contains(a.as_str()))
        .filter(|a| seen.insert(a.as_str()))
        .cloned()
        .collect()
}

/// The Cassandra back end: the prepared statements of `ledger_cql.rs` and
/// `ledger_cql_read.rs`, unchanged.
impl Ledger for CqlLedger {
    async fn write_rows(&self, events: &[&Event], now_secs: i64) -> Res<()> {
        CqlLedger::write_rows(self, events, now_secs).await
    }
    async fn claim(&self, claims: &[(&Event, Position)]) -> Res<Vec<Claim>> {
        CqlLedger::claim(self, claims).await
    }
    async fn parts(&self, keys: &[(CounterKey, i32)]) -> Res<Vec<Part>> {
        CqlLedger::parts(self, keys).await
    }
    async fn put_parts(&self, parts: &[(CounterKey, i32, Part)]) -> Res<()> {
        CqlLedger::put_parts(self, parts).await
    }
    async fn history(&self, message_id: &str) -> Res<Vec<Event>> {
        CqlLedger::history(self, message_id).await
    }
    async fn daily(&self, scope: &str, key: &str, day: &str) -> Res<Vec<(String, Deltas)>> {
        CqlLedger::daily(self, scope, key, day).await
    }
    async fn hourly(
        &self,
        scope: &str,
        key: &str,
        day: &str,
    ) -> Res<Vec<(String, String, Deltas)>> {
        CqlLedger::hourly(self, scope, key, day).await
    }
    async fn known_paths(&self) -> Res<Vec<(String, String)>> {
        CqlLedger::known_paths(self).await
    }
    async fn known_tenants(&self) -> Res<Vec<String>> {
        CqlLedger::known_tenants(self).await
    }
    async fn put_path_reputation(&self, row: &ReputationRow) -> Res<()> {
        CqlLedger::put_path_reputation(self, row).await
    }
    async fn put_tenant_reputation(&self, row: &TenantReputationRow) -> Res<()> {
        CqlLedger::put_tenant_reputation(self, row).await
    }
    async fn path_reputation(&self, ip: &str, site: &str) -> Res<Vec<ReputationRow>> {
        CqlLedger::path_reputation(self, ip, site).await
    }
    async fn tenant_reputation(&self, tenant: &str) -> Res<Vec<TenantReputationRow>> {
        CqlLedger::tenant_reputation(self, tenant).await
    }
    async fn suppressed(&self, tenant: &str, addresses: &[String]) -> Res<Vec<String>> {
        let found = CqlLedger::present_suppressions(self, tenant, &lookup_forms(addresses)).await?;
        Ok(pick_suppressed(addresses, &found))
    }
    async fn put_webhook_attempts(&self, attempts: &[WebhookAttempt]) -> Res<()> {
        CqlLedger::put_webhook_attempts(self, attempts).await
    }
    async fn webhook_attempts(
        &self,
        tenant: &str,
        webhook_id: &str,
        limit: usize,
    ) -> Res<Vec<WebhookAttempt>> {
        CqlLedger::webhook_attempts(self, tenant, webhook_id, limit).await
    }
}

/// Either back end, chosen at run time; implements [`Ledger`] by delegation.
pub enum AnyLedger {
    /// ScyllaDB/Cassandra (boxed: the prepared statements are large).
    Cql(Box<CqlLedger>),
    /// fjall in a data directory.
    Embedded(EmbeddedLedger),
}

impl From<CqlLedger> for AnyLedger {
    fn from(ledger: CqlLedger) -> Self {
        Self::Cql(Box::new(ledger))
    }
}

impl From<EmbeddedLedger> for AnyLedger {
    fn from(ledger: EmbeddedLedger) -> Self {
        Self::Embedded(ledger)
    }
}

/// Runs the same call on whichever back end `$any` holds.
macro_rules! each {
    ($any:expr, $l:ident => $call:expr) => {
        match $any {
            AnyLedger::Cql($l) => $call.await,
            AnyLedger::Embedded($l) => $call.await,
        }
    };
}

impl Ledger for AnyLedger {
    async fn write_rows(&self, events: &[&Event], now_secs: i64) -> Res<()> {
        each!(self, l => l.write_rows(events, now_secs))
    }
    async fn claim(&self, claims: &[(&Event, Position)]) -> Res<Vec<Claim>> {
        each!(self, l => l.claim(claims))
    }
    async fn parts(&self, keys: &[(CounterKey, i32)]) -> Res<Vec<Part>> {
        each!(self, l => l.parts(keys))
    }
    async fn put_parts(&self, parts: &[(CounterKey, i32, Part)]) -> Res<()> {
        each!(self, l => l.put_parts(parts))
    }
    async fn history(&self, message_id: &str) -> Res<Vec<Event>> {
        each!(self, l => l.history(message_id))
    }
    async fn daily(&self, scope: &str, key: &str, day: &str) -> Res<Vec<(String, Deltas)>> {
        each!(self, l => l.daily(scope, key, day))
    }
    async fn hourly(
        &self,
        scope: &str,
        key: &str,
        day: &str,
    ) -> Res<Vec<(String, String, Deltas)>> {
        each!(self, l => l.hourly(scope, key, day))
    }
    async fn known_paths(&self) -> Res<Vec<(String, String)>> {
        each!(self, l => l.known_paths())
    }
    async fn known_tenants(&self) -> Res<Vec<String>> {
        each!(self, l => l.known_tenants())
    }
    async fn put_path_reputation(&self, row: &ReputationRow) -> Res<()> {
        each!(self, l => l.put_path_reputation(row))
    }
    async fn put_tenant_reputation(&self, row: &TenantReputationRow) -> Res<()> {
        each!(self, l => l.put_tenant_reputation(row))
    }
    async fn path_reputation(&self, ip: &str, site: &str) -> Res<Vec<ReputationRow>> {
        each!(self, l => l.path_reputation(ip, site))
    }
    async fn tenant_reputation(&self, tenant: &str) -> Res<Vec<TenantReputationRow>> {
        each!(self, l => l.tenant_reputation(tenant))
    }
    async fn suppressed(&self, tenant: &str, addresses: &[String]) -> Res<Vec<String>> {
        each!(self, l => l.suppressed(tenant, addresses))
    }
    async fn put_webhook_attempts(&self, attempts: &[WebhookAttempt]) -> Res<()> {
        each!(self, l => l.put_webhook_attempts(attempts))
    }
    async fn webhook_attempts(
        &self,
        tenant: &str,
        webhook_id: &str,
        limit: usize,
    ) -> Res<Vec<WebhookAttempt>> {
        each!(self, l => l.webhook_attempts(tenant, webhook_id, limit))
    }
}
