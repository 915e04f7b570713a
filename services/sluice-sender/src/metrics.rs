//! The sender's metrics, exposed in the OpenMetrics text format at
//! `GET /metrics` on `metrics.listen`. Every metric has a help text and, where
//! it measures a quantity, a unit; docs/metrics.md lists them and a test keeps
//! that list complete.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The `site` label of a site: its configured name, or `other` for the
/// sites made up from MX sets no rule matches (`mx:<hosts>`), whose number
/// has no bound.
pub fn site_label(site: &str) -> String {
    if site.starts_with("mx:") {
        "other".to_owned()
    } else {
        site.to_owned()
    }
}

/// Labels of an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `deferred`, `bounced` or `expired`.
    pub kind: String,
    /// The recipient's configured site, `other` for a site no rule names,
    /// empty when it was never routed.
    pub site: String,
}

/// Labels of an SMTP transaction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    pub source_ip: String,
    pub site: String,
}

/// Labels of a site's queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    /// The configured site name, or `other` (see [`site_label`]).
    pub site: String,
}

/// All metrics of one sender node.
pub struct SenderMetrics {
    registry: Registry,
    pub outcomes: Family<OutcomeLabels, Counter>,
    pub overflowed: Counter,
    pub transaction_seconds: Family<PathLabels, Histogram>,
    pub queued: Gauge,
    pub in_delivery: Gauge,
    pub records_in_flight: Gauge,
    pub signaled_paths: Gauge,
    pub leased_ips: Gauge,
    pub site_queued: Family<SiteLabels, Gauge>,
    pub site_oldest_seconds: Family<SiteLabels, Gauge<f64, AtomicU64>>,
}

impl Default for SenderMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SenderMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice_sender");
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "outcomes",
            "Final and deferred outcomes of delivery attempts, by kind and site",
            outcomes.clone(),
        );
        let overflowed = Counter::default();
        registry.register(
            "overflowed",
            "Messages sent to the first delay tier because their site's ready queue was full",
            overflowed.clone(),
        );
        let transaction_seconds = Family::<PathLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register_with_unit(
            "transaction",
            "Time from MAIL FROM to the reply after the message content, per source IP and site",
            Unit::Seconds,
            transaction_seconds.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let queued = gauge(
            &mut registry,
            "queued_messages",
            "Messages waiting in site ready queues",
        );
        let in_delivery = gauge(
            &mut registry,
            "deliveries_in_progress",
            "SMTP transactions under way",
        );
        let records_in_flight = gauge(
            &mut registry,
            "records_in_flight",
            "Records read from Kafka whose fate is not yet durable (bounded by queues.max_in_flight)",
        );
        let signaled_paths = gauge(
            &mut registry,
            "signaled_paths",
            "(IP, site) paths currently paused or slowed by the recorder's reputation signals",
        );
        let leased_ips = gauge(
            &mut registry,
            "leased_ips",
            "Source IPs this node holds a lease on and may send from",
        );
        let site_queued = Family::<SiteLabels, Gauge>::default();
        registry.register(
            "site_queued_messages",
            "Messages waiting in a site's ready queue (sites no rule names are summed as other)",
            site_queued.clone(),
        );
        let site_oldest_seconds = Family::<SiteLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "site_oldest_queued",
            "Time the oldest message of a site's ready queue has waited there",
            Unit::Seconds,
            site_oldest_seconds.clone(),
        );
        Self {
            registry,
            site_queued,
            site_oldest_seconds,
            outcomes,
            overflowed,
            transaction_seconds,
            queued,
            in_delivery,
            records_in_flight,
            signaled_paths,
            leased_ips,
        }
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
        let m = SenderMetrics::new();
        m.outcomes
            .get_or_create(&OutcomeLabels {
                kind: "delivered".into(),
                site: "google".into(),
            })
            .inc();
        m.transaction_seconds
            .get_or_create(&PathLabels {
                source_ip: "192.0.2.1".into(),
                site: "google".into(),
            })
            .observe(0.02);
        let google = SiteLabels {
            site: "google".into(),
        };
        m.site_queued.get_or_create(&google).set(3);
        m.site_oldest_seconds.get_or_create(&google).set(1.5);
        let text = m.render();
        assert!(
            text.contains("sluice_sender_site_oldest_queued_seconds{site=\"google\"} 1.5"),
            "{text}"
        );
        assert!(
            text.contains("sluice_sender_outcomes_total{kind=\"delivered\",site=\"google\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT sluice_sender_transaction_seconds seconds"),
            "{text}"
        );
        assert_eq!(site_label("mx:mx1.a.example,mx2.a.example"), "other");
        assert_eq!(site_label("google"), "google");
        sluice_node::metrics::assert_documented(&text, include_str!("../../../docs/metrics.md"));
    }
}
