//! Writes one batch of decoded events, retrying a failed stage with
//! exponential backoff until it succeeds or the recorder shuts down.
//!
//! Order per batch: (1) idempotent rows (history, campaign timeline,
//! suppressions) for every event; (2) de-duplication claims, which name
//! their record; (3) the counter parts of the events whose claim was new.
//! Every stage is idempotent, so a retried stage repeats its statements and
//! a replayed batch counts nothing twice (docs/recorder.md#exact-counters).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
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
use crate::parts::{PartCache, Tally};
use crate::record::{self, Deltas, Position};

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

impl Written {
    /// Notes an event counted for the first time.
    fn count(&mut self, event: &Event) {
        self.counted += 1;
        let kind = crate::metrics::kind_label(event.kind());
        *self
            .by_tenant
            .entry((event.tenant.clone(), kind))
            .or_default() += 1;
        if record::deltas(event) == Deltas::default() {
            return;
        }
        if !event.source_ip.is_empty() && !event.site.is_empty() {
            self.paths
                .insert((event.source_ip.clone(), event.site.clone()));
        }
        if !event.tenant.is_empty() {
            self.tenants.insert(event.tenant.clone());
        }
    }
}

/// Batch writer with its retry policy.
pub struct Writer {
    pub(crate) ledger: Arc<AnyLedger>,
    pub(crate) concurrency: usize,
    pub(crate) retry_initial: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stop: CancellationToken,
    /// The parts of the partitions this recorder reads.
    pub(crate) parts: PartCache,
}

impl Writer {
    /// Writes `batch` (each event with its record's position) completely, or
    /// returns [`RecorderError::ShuttingDown`] when asked to stop while
    /// waiting to retry. Every stage is idempotent, so a replay of any part
    /// of the batch (after a crash, a failed commit or a rebalance) counts
    /// nothing twice: see docs/recorder.md#exact-counters.
    pub async fn write(
        &self,
        batch: &[(Event, Position)],
        now_secs: i64,
    ) -> Result<Written, RecorderError> {
        let events: Vec<&Event> = batch.iter().map(|(e, _)| e).collect();
        self.retry("rows", || self.ledger.write_rows(&events, now_secs))
            .await?;
        let claims = self.claims(batch).await?;
        let mut written = Written::default();
        let mut tally = Tally::default();
        for ((event, at), claim) in batch.iter().zip(&claims) {
            tally.read(*at);
            match claim {
                Claim::New => {}
                Claim::Duplicate => {
                    written.duplicates += 1;
                    continue;
                }
                Claim::Repeat => {
                    written.duplicates += 1;
                    if event.kind() == EventKind::Delivered {
                        written.duplicate_deliveries += 1;
                    }
                    continue;
                }
            }
            written.count(event);
            let deltas = record::deltas(event);
            if deltas != Deltas::default() {
                tally.count(record::counter_keys(event, now_secs), *at, deltas);
            }
        }
        self.count(&tally).await?;
        Ok(written)
    }

    /// The claim of every event of the batch: the first event of each
    /// de-duplication key asks the ledger; a later one in the same batch is
    /// a duplicate of it (same event id) or a repeat.
    pub(crate) async fn claims(
        &self,
        batch: &[(Event, Position)],
    ) -> Result<Vec<Claim>, RecorderError> {
        let mut first: HashMap<(String, u32, i32), usize> = HashMap::new();
        let mut asked: Vec<(&Event, Position)> = Vec::new();
        let mut slots = Vec::with_capacity(batch.len());
        for (i, (event, at)) in batch.iter().enumerate() {
            match first.entry(record::dedup_key(event)) {
                Entry::Vacant(slot) => {
                    slot.insert(i);
                    slots.push(Err(asked.len()));
                    asked.push((event, *at));
                }
                Entry::Occupied(held) => {
                    let same = batch[*held.get()].0.event_id == event.event_id;
                    slots.push(Ok(if same {
                        Claim::Duplicate
                    } else {
                        Claim::Repeat
                    }));
                }
            }
        }
        let answers = self.retry("claims", || self.ledger.claim(&asked)).await?;
        Ok(slots
            .into_iter()
            .map(|slot| slot.unwrap_or_else(|i| answers[i]))
            .collect())
    }

    /// Folds the batch's counted events into their parts (read once per
    /// ownership, then cached) and writes the parts.
    async fn count(&self, tally: &Tally) -> Result<(), RecorderError> {
        let missing = self.parts.missing(tally.events.keys());
        if !missing.is_empty() {
            let stored = self.retry("parts", || self.ledger.parts(&missing)).await?;
            self.parts.put(missing.iter().cloned().zip(stored));
        }
        let parts = tally.fold(|key| self.parts.get(key));
        self.retry("counters", || self.ledger.put_parts(&parts))
            .await?;
        self.parts
            .put(parts.into_iter().map(|(k, p, part)| ((k, p), part)));
        Ok(())
    }

    /// Forgets the cached parts: the recorder's partitions changed.
    pub fn forget_parts(&self) {
        self.parts.forget();
    }

    /// Runs `op` until it succeeds, with exponential backoff between tries;
    /// [`RecorderError::ShuttingDown`] when asked to stop while waiting.
    async fn retry<R, F, Fut>(&self, stage: &str, op: F) -> Result<R, RecorderError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<R, RecorderError>>,
    {
        let mut delay = self.retry_initial;
        for attempt in 1_u32.. {
            match op().await {
                Ok(r) => return Ok(r),
                Err(err) => {
                    self.metrics.write_retries.inc();
                    tracing::warn!(
                        stage, attempt, retry_in = ?delay, error = %err,
                        "batch write failed; retrying, offsets stay uncommitted"
                    );
                    self.sleep_or_stop(delay).await?;
                    delay = (delay * 2).min(self.retry_max);
                }
            }
        }
        unreachable!("the retry loop returns")
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
