//! The sender's metrics, exposed in the OpenMetrics text format at
//! `GET /metrics` on `metrics.listen`. Every metric has a help text and, where
//! it measures a quantity, a unit; docs/metrics.md lists them and a test keeps
//! that list complete.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use sluice_node::metrics::PartitionGauges;

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
    /// The node's pool.
    pub pool: String,
    /// The source IP of the attempt (one of the pool's); empty when no
    /// attempt was made (expiry, a message that could not be routed).
    pub source_ip: String,
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

/// Labels of a site's wait.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitLabels {
    /// The configured site name, or `other` (see [`site_label`]).
    pub site: String,
    /// `rate`, `connections` or `held` (the dispatcher's `Wait`).
    pub reason: String,
}

/// Labels of open SMTP sessions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// One of the pool's source IPs.
    pub source_ip: String,
    /// `busy` (carrying a delivery) or `idle` (kept open for the next).
    pub state: String,
}

/// All metrics of one sender node.
pub struct SenderMetrics {
    registry: Registry,
    pub outcomes: Family<OutcomeLabels, Counter>,
    pub overflowed: Counter,
    pub hops: Counter,
    pub woken: Counter,
    pub transaction_seconds: Family<PathLabels, Histogram>,
    pub queued: Gauge,
    pub in_delivery: Gauge,
    pub records_in_flight: Gauge,
    pub signaled_paths: Gauge,
    pub leased_ips: Gauge,
    pub site_queued: Family<SiteLabels, Gauge>,
    pub site_oldest_seconds: Family<SiteLabels, Gauge<f64, AtomicU64>>,
    /// Records of each partition this node reads that its group has not
    /// committed (refreshed by the consumer every few seconds).
    pub consumer_lag: PartitionGauges,
    pub smtp_connections: Family<ConnectionLabels, Gauge>,
    pub connections_opened: Family<PathLabels, Counter>,
    pub site_waiting: Family<WaitLabels, Gauge>,
    /// Source IPs `smtp_connections` shows, to remove those that go.
    connection_ips: Mutex<BTreeSet<String>>,
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
            "Final and deferred outcomes of delivery attempts, by kind, site, pool and source IP",
            outcomes.clone(),
        );
        let overflowed = Counter::default();
        registry.register(
            "overflowed",
            "Messages sent to a delay tier because their site's ready queue was full (each a re-write of the message)",
            overflowed.clone(),
        );
        let hops = Counter::default();
        registry.register(
            "tier_hops",
            "Messages written to a delay tier because they are not due yet: scheduled mail leaving the outbound topic, and records that came out of a tier before their due time (long retries, parked overflow)",
            hops.clone(),
        );
        let woken = Counter::default();
        registry.register(
            "woken",
            "Parked messages released before their slot because their site's limits changed in control",
            woken.clone(),
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
        let consumer_lag = PartitionGauges::default();
        registry.register_with_unit(
            "consumer_lag",
            "Records of a partition this node reads (outbound topic, delay tiers) that its consumer group has not committed, per topic and partition (updated every 5 s)",
            Unit::Other("records".into()),
            consumer_lag.family(),
        );
        let smtp_connections = Family::<ConnectionLabels, Gauge>::default();
        registry.register_with_unit(
            "smtp",
            "Open SMTP sessions per source IP: busy with a delivery, or idle and kept for the next one",
            Unit::Other("connections".into()),
            smtp_connections.clone(),
        );
        let connections_opened = Family::<PathLabels, Counter>::default();
        registry.register(
            "smtp_connections_opened",
            "SMTP connections opened, per source IP and site (each counted when the shaping engine grants it); next to the deliveries, it shows how often idle connections are reused",
            connections_opened.clone(),
        );
        let site_waiting = Family::<WaitLabels, Gauge>::default();
        registry.register(
            "site_waiting",
            "Sites whose ready queue holds messages that cannot start yet, by reason: rate (a message or connection rate, calendar or warm-up limit, or a suspension), connections (every allowed connection busy) or held (paused); sites no rule names are summed as other",
            site_waiting.clone(),
        );
        Self {
            registry,
            consumer_lag,
            smtp_connections,
            connections_opened,
            site_waiting,
            connection_ips: Mutex::default(),
            site_queued,
            site_oldest_seconds,
            outcomes,
            overflowed,
            hops,
            woken,
            transaction_seconds,
            queued,
            in_delivery,
            records_in_flight,
            signaled_paths,
            leased_ips,
        }
    }

    /// Sets the open SMTP sessions, `(busy, idle)` per source IP; IPs shown
    /// before that `open` does not name any more are removed.
    pub fn set_connections(&self, open: &BTreeMap<IpAddr, (i64, i64)>) {
        let mut shown = self.connection_ips.lock().expect("connection IPs lock");
        let now: BTreeSet<String> = open.keys().map(IpAddr::to_string).collect();
        for gone in shown.difference(&now) {
            for state in ["busy", "idle"] {
                self.smtp_connections.remove(&connection(gone, state));
            }
        }
        for (ip, (busy, idle)) in open {
            let ip = ip.to_string();
            self.smtp_connections
                .get_or_create(&connection(&ip, "busy"))
                .set(*busy);
            self.smtp_connections
                .get_or_create(&connection(&ip, "idle"))
                .set(*idle);
        }
        *shown = now;
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        sluice_node::metrics::render(&self.registry)
    }
}

fn connection(source_ip: &str, state: &str) -> ConnectionLabels {
    ConnectionLabels {
        source_ip: source_ip.to_owned(),
        state: state.to_owned(),
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
                pool: "shared".into(),
                source_ip: "192.0.2.1".into(),
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
        m.site_waiting
            .get_or_create(&WaitLabels {
                site: "google".into(),
                reason: "rate".into(),
            })
            .set(1);
        m.connections_opened
            .get_or_create(&PathLabels {
                source_ip: "192.0.2.1".into(),
                site: "google".into(),
            })
            .inc();
        m.site_oldest_seconds.get_or_create(&google).set(1.5);
        m.consumer_lag
            .replace([("sluice.outbound.main".to_owned(), 2, 40)]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        m.set_connections(&BTreeMap::from([
            (ip("192.0.2.1"), (2, 1)),
            (ip("192.0.2.2"), (0, 0)),
        ]));
        m.set_connections(&BTreeMap::from([(ip("192.0.2.1"), (3, 0))]));
        let text = m.render();
        for expected in [
            "sluice_sender_consumer_lag_records{topic=\"sluice.outbound.main\",partition=\"2\"} 40",
            "# UNIT sluice_sender_consumer_lag_records records",
            "sluice_sender_smtp_connections{source_ip=\"192.0.2.1\",state=\"busy\"} 3",
            "sluice_sender_smtp_connections{source_ip=\"192.0.2.1\",state=\"idle\"} 0",
            "# UNIT sluice_sender_smtp_connections connections",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        assert!(
            !text.contains("192.0.2.2"),
            "an IP gone from the pool stays: {text}"
        );
        assert!(
            text.contains("sluice_sender_site_oldest_queued_seconds{site=\"google\"} 1.5"),
            "{text}"
        );
        assert!(
            text.contains("sluice_sender_outcomes_total{kind=\"delivered\",site=\"google\",pool=\"shared\",source_ip=\"192.0.2.1\"} 1"),
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
