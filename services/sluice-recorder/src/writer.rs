//! Writes one batch of decoded events, retrying every failed statement with
//! exponential backoff until it succeeds or the recorder shuts down.
//!
//! Order per batch: (1) idempotent rows (history, campaign timeline,
//! suppressions) for every event; (2) de-duplication claims; (3) counters for
//! the events whose claim was new, summed per counter row first. Each stage
//! retries only its failed statements, so a finished stage never runs twice.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sluice_node::CancellationToken;
use sluice_proto::v1::{Event, EventKind};

use crate::RecorderError;
use crate::ledger::Claim;
use crate::ledger::{AnyLedger, Ledger};
use crate::metrics::Metrics;
use crate::record::{self, CounterKey, Deltas};

/// What a written batch changed, for the reputation scorer and metrics.
#[derive(Debug, Default)]
pub struct Written {
    /// Events counted for the first time.
    pub counted: u64,
    /// Events recognised as duplicates (same message id, attempt and kind).
    pub duplicates: u64,
    /// `delivered` events of a message that already had one (any attempt):
    /// the message reached its recipient more than once.
    pub duplicate_deliveries: u64,
    /// (source IP, site) paths whose counters changed.
    pub paths: HashSet<(String, String)>,
    /// Tenants whose counters changed.
    pub tenants: HashSet<String>,
    /// Events counted for the first time, per (tenant, kind label).
    pub by_tenant: BTreeMap<(String, &'static str), u64>,
}

/// Batch writer with its retry policy.
pub struct Writer {
    pub(crate) ledger: Arc<AnyLedger>,
    pub(crate) concurrency: usize,
    pub(crate) retry_initial: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stop: CancellationToken,
}

impl Writer {
    /// Writes `events` completely, or returns [`RecorderError::ShuttingDown`]
    /// when asked to stop while waiting to retry.
    pub async fn write(&self, events: &[Event], now_secs: i64) -> Result<Written, RecorderError> {
        let mut seen = HashSet::new();
        let unique: Vec<&Event> = events
            .iter()
            .filter(|e| seen.insert((record::dedup_key(e), e.event_id.as_str())))
            .collect();
        let in_batch_duplicates = (events.len() - unique.len()) as u64;

        self.retry_all("rows", &unique, |e, _| self.ledger.write_rows(e, now_secs))
            .await?;
        let claims = self
            .retry_all("claims", &unique, |e, attempt| {
                self.ledger.claim(e, attempt > 0)
            })
            .await?;
        let duplicate_deliveries = self.duplicate_deliveries(&unique, &claims).await?;
        let new: Vec<&Event> = unique
            .iter()
            .zip(&claims)
            .filter(|(_, c)| **c == Claim::New)
            .map(|(e, _)| *e)
            .collect();

        let mut sums: BTreeMap<CounterKey, Deltas> = BTreeMap::new();
        let mut written = Written::default();
        for event in &new {
            let kind = crate::metrics::kind_label(event.kind());
            *written
                .by_tenant
                .entry((event.tenant.clone(), kind))
                .or_default() += 1;
            let deltas = record::deltas(event);
            if deltas == Deltas::default() {
                continue;
            }
            for key in record::counter_keys(event, now_secs) {
                sums.entry(key).or_default().add(&deltas);
            }
            if !event.source_ip.is_empty() && !event.site.is_empty() {
                written
                    .paths
                    .insert((event.source_ip.clone(), event.site.clone()));
            }
            if !event.tenant.is_empty() {
                written.tenants.insert(event.tenant.clone());
            }
        }
        let rows: Vec<(CounterKey, Deltas)> = sums.into_iter().collect();
        self.retry_all("counters", &rows, |(k, d), _| self.ledger.bump(k, d))
            .await?;
        written.counted = new.len() as u64;
        written.duplicates = in_batch_duplicates + (unique.len() - new.len()) as u64;
        written.duplicate_deliveries = duplicate_deliveries;
        Ok(written)
    }

    /// Claims "delivered, any attempt" for every `delivered` event that is
    /// not a replay of one already seen; counts those another event holds.
    async fn duplicate_deliveries(
        &self,
        unique: &[&Event],
        claims: &[Claim],
    ) -> Result<u64, RecorderError> {
        let delivered: Vec<Event> = unique
            .iter()
            .zip(claims)
            .filter(|(e, c)| **c != Claim::Duplicate && e.kind() == EventKind::Delivered)
            .map(|(e, _)| Event {
                attempt: record::ANY_ATTEMPT,
                ..(*e).clone()
            })
            .collect();
        if delivered.is_empty() {
            return Ok(0);
        }
        let again = self
            .retry_all("delivery claims", &delivered, |e, attempt| {
                self.ledger.claim(e, attempt > 0)
            })
            .await?;
        Ok(again.iter().filter(|c| **c == Claim::Repeat).count() as u64)
    }

    /// Completes events that name only their message (the inbound role's
    /// late bounces and complaints) from the message's history
    /// ([`crate::enrich`]): its events earlier in this batch (a message's
    /// events share a partition, so they come in order), else those the
    /// ledger holds. An event whose message has no history is written as it
    /// is.
    pub async fn enrich(&self, events: &mut [Event]) -> Result<(), RecorderError> {
        let mut orphans = Vec::new();
        for i in 0..events.len() {
            if !crate::enrich::needs_history(&events[i]) {
                continue;
            }
            let (earlier, rest) = events.split_at_mut(i);
            let id = &rest[0].message_id;
            let batch: Vec<Event> = earlier
                .iter()
                .filter(|e| &e.message_id == id)
                .cloned()
                .collect();
            if !crate::enrich::from_history(&mut rest[0], &batch) {
                orphans.push(i);
            }
        }
        if orphans.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = orphans
            .iter()
            .map(|&i| events[i].message_id.clone())
            .collect();
        let histories = self
            .retry_all("history", &ids, |id, _| self.ledger.history(id))
            .await?;
        for (i, history) in orphans.into_iter().zip(histories) {
            if !crate::enrich::from_history(&mut events[i], &history) {
                tracing::warn!(message_id = %events[i].message_id, "a late report names a message with no history here; recorded without a tenant (no suppression)");
            }
        }
        Ok(())
    }

    /// Runs `op` for every item, `concurrency` at a time; retries the failed
    /// ones (passing the retry number) until all succeeded. Results come back
    /// in the order of `items`.
    async fn retry_all<'a, T, R, F, Fut>(
        &self,
        stage: &str,
        items: &'a [T],
        op: F,
    ) -> Result<Vec<R>, RecorderError>
    where
        T: Sync,
        F: Fn(&'a T, u32) -> Fut,
        Fut: Future<Output = Result<R, RecorderError>>,
    {
        let mut results: Vec<Option<R>> = items.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut delay = self.retry_initial;
        for attempt in 0_u32.. {
            let outcomes: Vec<(usize, Result<R, RecorderError>)> = futures::stream::iter(pending)
                .map(|i| {
                    let fut = op(&items[i], attempt);
                    async move { (i, fut.await) }
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
            let mut failed = Vec::new();
            let mut last_error = None;
            for (i, outcome) in outcomes {
                match outcome {
                    Ok(r) => results[i] = Some(r),
                    Err(e) => {
                        failed.push(i);
                        last_error = Some(e);
                    }
                }
            }
            if failed.is_empty() {
                break;
            }
            self.metrics.write_retries.inc();
            tracing::warn!(
                stage,
                failed = failed.len(),
                attempt,
                retry_in = ?delay,
                error = %last_error.map(|e| e.to_string()).unwrap_or_default(),
                "batch write failed; retrying, offsets stay uncommitted"
            );
            self.sleep_or_stop(delay).await?;
            delay = (delay * 2).min(self.retry_max);
            pending = failed;
        }
        Ok(results.into_iter().flatten().collect())
    }

    async fn sleep_or_stop(&self, delay: Duration) -> Result<(), RecorderError> {
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            () = self.stop.cancelled() => Err(RecorderError::ShuttingDown),
        }
    }
}
