//! The recorder's metrics, declared once in a registry prefixed
//! `sluice_recorder_`: readable while it runs (the tests read the counters)
//! and served at `GET /metrics` on `metrics.listen`. docs/metrics.md lists
//! every one; a test below keeps that list complete.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use sluice_node::metrics::{BoundedLabels, PartitionGauges};
use sluice_proto::v1::EventKind;

/// Labels of a tenant's events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantEventLabels {
    /// The tenant; `other` beyond the first
    /// [`sluice_node::metrics::MAX_TENANT_LABELS`] names.
    pub tenant: String,
    /// The event kind: `accepted`, `delivered`, `deferred`, `bounced`, ...
    pub kind: String,
}

/// The `kind` label of an event kind.
pub fn kind_label(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Unspecified => "unspecified",
        EventKind::Accepted => "accepted",
        EventKind::Delivered => "delivered",
        EventKind::Deferred => "deferred",
        EventKind::Bounced => "bounced",
        EventKind::Expired => "expired",
        EventKind::Suppressed => "suppressed",
        EventKind::Complained => "complained",
        EventKind::Opened => "opened",
        EventKind::Clicked => "clicked",
        EventKind::Unsubscribed => "unsubscribed",
        EventKind::WebhookDisabled => "webhook_disabled",
    }
}

/// Totals since the recorder started.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Events counted for the first time.
    pub counted: Counter,
    /// Events skipped as duplicates.
    pub duplicates: Counter,
    /// `delivered` events of a message that already had one, at any attempt:
    /// the recipient got the message twice.
    pub duplicate_deliveries: Counter,
    /// Records that were not a decodable `Event`.
    pub malformed: Counter,
    /// Batches written and committed.
    pub batches: Counter,
    /// Rounds of retries after failed writes.
    pub write_retries: Counter,
    /// Offset commits that failed after the writes succeeded; their events
    /// are read again and de-duplicated.
    pub commit_failures: Counter,
    /// Time to write one batch to the ledger, retries included.
    pub write_seconds: Histogram,
    /// Events per batch written.
    pub batch_events: Histogram,
    /// Events recorded for the first time, per tenant and kind.
    pub tenant_events: Family<TenantEventLabels, Counter>,
    /// The tenant names `tenant_events` uses as labels.
    tenants: BoundedLabels,
    /// Records of each partition of the events topic this recorder owns
    /// that its group has not committed.
    pub consumer_lag: PartitionGauges,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice_recorder");
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let counted = counter("events_counted", "Events recorded for the first time");
        let duplicates = counter(
            "events_duplicate",
            "Events skipped because the ledger already had them (redelivery after a crash or rebalance)",
        );
        let duplicate_deliveries = counter(
            "deliveries_duplicate",
            "Delivered events of messages that already had one: recipients who got a message twice",
        );
        let malformed = counter(
            "records_malformed",
            "Records on the events topic that are not a decodable event (skipped)",
        );
        let batches = counter(
            "batches_committed",
            "Batches written to the ledger and committed",
        );
        let write_retries = counter(
            "write_retries",
            "Rounds of retries after a failed ledger write (offsets stay uncommitted meanwhile)",
        );
        let commit_failures = counter(
            "commit_failures",
            "Offset commits that failed after the batch was written (read again, de-duplicated)",
        );
        let write_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "batch_write",
            "Time to write one batch to the ledger, retries included",
            Unit::Seconds,
            write_seconds.clone(),
        );
        let batch_events = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "batch_events",
            "Events per batch written",
            batch_events.clone(),
        );
        let tenant_events = Family::<TenantEventLabels, Counter>::default();
        registry.register(
            "tenant_events",
            "Events recorded for the first time, per tenant (other beyond 1000 names) and event kind",
            tenant_events.clone(),
        );
        let consumer_lag = PartitionGauges::default();
        registry.register_with_unit(
            "consumer_lag",
            "Records of a partition of the events topic this recorder owns that its consumer group has not committed (updated every 5 s)",
            Unit::Other("records".into()),
            consumer_lag.family(),
        );
        Self {
            registry,
            tenant_events,
            tenants: BoundedLabels::default(),
            consumer_lag,
            counted,
            duplicates,
            duplicate_deliveries,
            malformed,
            batches,
            write_retries,
            commit_failures,
            write_seconds,
            batch_events,
        }
    }

    /// Counts events recorded for the first time: `n` per (tenant, kind).
    pub fn tenant_events(&self, counts: &BTreeMap<(String, &'static str), u64>) {
        for ((tenant, kind), n) in counts {
            let labels = TenantEventLabels {
                tenant: self.tenants.label(tenant),
                kind: (*kind).to_owned(),
            };
            self.tenant_events.get_or_create(&labels).inc_by(*n);
        }
    }

    /// Reads one counter.
    pub fn get(counter: &Counter) -> u64 {
        counter.get()
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        sluice_node::metrics::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_is_listed_in_the_docs() {
        let m = Metrics::new();
        m.counted.inc_by(3);
        m.write_seconds.observe(0.01);
        m.tenant_events(&BTreeMap::from([(("acme".to_owned(), "bounced"), 2)]));
        m.consumer_lag
            .replace([("sluice.events".to_owned(), 0, 12)]);
        let text = m.render();
        for expected in [
            "sluice_recorder_tenant_events_total{tenant=\"acme\",kind=\"bounced\"} 2",
            "sluice_recorder_consumer_lag_records{topic=\"sluice.events\",partition=\"0\"} 12",
            "# UNIT sluice_recorder_consumer_lag_records records",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        assert_eq!(kind_label(EventKind::Delivered), "delivered");
        assert_eq!(kind_label(EventKind::Unsubscribed), "unsubscribed");
        assert!(
            text.contains("sluice_recorder_events_counted_total 3"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT sluice_recorder_batch_write_seconds seconds"),
            "{text}"
        );
        sluice_node::metrics::assert_documented(&text, include_str!("../../../docs/metrics.md"));
    }
}
