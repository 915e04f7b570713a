//! Ingest's metrics, declared once in a registry prefixed `sluice_ingest_`
//! and served at `GET /metrics` on `metrics.listen`. docs/metrics.md lists
//! every one; a test below keeps that list complete. Label values are
//! bounded: front doors and outcomes are fixed sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use sluice_node::metrics::BoundedLabels;

use crate::IngestError;

/// The front door a submission came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    Grpc,
    Http,
    Smtp,
}

impl Door {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Door::Grpc => "grpc",
            Door::Http => "http",
            Door::Smtp => "smtp",
        }
    }
}

/// Labels of an answered submission.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `grpc`, `http` or `smtp`.
    pub door: String,
    /// `accepted`, or the error kind (`invalid`, `forbidden`, `too_large`,
    /// `rate_limited`, `backpressure`, `unavailable`, ...).
    pub outcome: String,
}

/// Labels of a front door.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DoorLabels {
    pub door: String,
}

/// Labels of recipients taken in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecipientLabels {
    /// `published` or `suppressed`.
    pub outcome: String,
}

/// Labels of a tenant's recipients.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantRecipientLabels {
    /// The tenant; `other` beyond the first
    /// [`sluice_node::metrics::MAX_TENANT_LABELS`] names.
    pub tenant: String,
    /// `published`, `suppressed` or `refused`.
    pub outcome: String,
}

/// Labels of a request to a link endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    /// `unsubscribe`, `open` or `click`.
    pub link: String,
    /// `recorded`, `refused` (forged or altered), `failed` (the log refused
    /// the event) or `unconfirmed` (the log did not answer within 5 s).
    pub outcome: String,
}

/// All metrics of one ingest node.
#[derive(Debug)]
pub struct IngestMetrics {
    registry: Registry,
    pub submissions: Family<RequestLabels, Counter>,
    pub submission_seconds: Family<DoorLabels, Histogram>,
    pub recipients: Family<RecipientLabels, Counter>,
    pub signing_seconds: Histogram,
    /// Submissions whose DKIM signing failed (refused as internal errors).
    pub dkim_failures: Counter,
    pub log_append_seconds: Histogram,
    pub shed: Family<DoorLabels, Counter>,
    pub tenant_recipients: Family<TenantRecipientLabels, Counter>,
    pub links: Family<LinkLabels, Counter>,
    /// The tenant names `tenant_recipients` uses as labels.
    tenants: BoundedLabels,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl IngestMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice_ingest");
        let submissions = Family::<RequestLabels, Counter>::default();
        registry.register(
            "submissions",
            "Submissions answered, by front door and outcome (accepted or the error kind)",
            submissions.clone(),
        );
        let submission_seconds = Family::<DoorLabels, Histogram>::new_with_constructor(seconds);
        registry.register_with_unit(
            "submission",
            "Time from a decoded submission to its answer (checks, rendering, signing, log append)",
            Unit::Seconds,
            submission_seconds.clone(),
        );
        let recipients = Family::<RecipientLabels, Counter>::default();
        registry.register(
            "recipients",
            "Recipients of accepted submissions: published to the log, or suppressed",
            recipients.clone(),
        );
        let signing_seconds = seconds();
        registry.register_with_unit(
            "signing",
            "Time to DKIM-sign every copy of one submission",
            Unit::Seconds,
            signing_seconds.clone(),
        );
        let dkim_failures = Counter::default();
        registry.register(
            "dkim_failures",
            "Submissions whose DKIM signing failed (a key that does not load or sign); refused as internal errors",
            dkim_failures.clone(),
        );
        let log_append_seconds = seconds();
        registry.register_with_unit(
            "log_append",
            "Time for the message log to acknowledge one submission's records",
            Unit::Seconds,
            log_append_seconds.clone(),
        );
        let shed = Family::<DoorLabels, Counter>::default();
        registry.register(
            "requests_shed",
            "Requests answered \"try later\" because the listener had limits.max_requests in progress",
            shed.clone(),
        );
        let tenant_recipients = Family::<TenantRecipientLabels, Counter>::default();
        registry.register(
            "tenant_recipients",
            "Recipients per tenant (other beyond 1000 names): published to the log, suppressed, or refused with their submission",
            tenant_recipients.clone(),
        );
        let links = Family::<LinkLabels, Counter>::default();
        registry.register(
            "link_requests",
            "Requests to the one-click unsubscribe, open-pixel and click-redirect endpoints, by whether their event reached the log (or the link was refused)",
            links.clone(),
        );
        Self {
            registry,
            links,
            tenant_recipients,
            tenants: BoundedLabels::default(),
            submissions,
            submission_seconds,
            recipients,
            signing_seconds,
            dkim_failures,
            log_append_seconds,
            shed,
        }
    }

    /// Counts one answered submission that took `seconds`.
    pub fn answered(&self, door: Door, outcome: Result<(), &IngestError>, seconds: f64) {
        let outcome = match outcome {
            Ok(()) => "accepted",
            Err(err) => err.kind(),
        };
        let door = door.label().to_owned();
        self.submissions
            .get_or_create(&RequestLabels {
                door: door.clone(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.submission_seconds
            .get_or_create(&DoorLabels { door })
            .observe(seconds);
    }

    /// Counts recipients taken in: `published` and `suppressed`.
    pub fn recipients(&self, published: usize, suppressed: usize) {
        for (outcome, n) in [("published", published), ("suppressed", suppressed)] {
            let labels = RecipientLabels {
                outcome: outcome.to_owned(),
            };
            self.recipients.get_or_create(&labels).inc_by(n as u64);
        }
    }

    /// Counts `n` recipients of `tenant` with `outcome` (`published`,
    /// `suppressed` or `refused`); nothing when `n` is 0.
    pub fn tenant_recipients(&self, tenant: &str, outcome: &str, n: usize) {
        if n == 0 {
            return;
        }
        let labels = TenantRecipientLabels {
            tenant: self.tenants.label(tenant),
            outcome: outcome.to_owned(),
        };
        self.tenant_recipients
            .get_or_create(&labels)
            .inc_by(n as u64);
    }

    /// Counts one request to a link endpoint.
    pub fn link(&self, link: &str, outcome: &str) {
        let labels = LinkLabels {
            link: link.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.links.get_or_create(&labels).inc();
    }

    /// The shed counter of a listener, to hand to its [`sluice_node::shed::Shed`].
    pub fn shed_counter(&self, door: Door) -> Counter {
        let labels = DoorLabels {
            door: door.label().to_owned(),
        };
        self.shed.get_or_create(&labels).clone()
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
        let m = IngestMetrics::new();
        m.answered(Door::Http, Ok(()), 0.01);
        let err = IngestError::invalid("from", "empty");
        m.answered(Door::Grpc, Err(&err), 0.001);
        m.recipients(2, 1);
        m.tenant_recipients("acme", "published", 2);
        m.tenant_recipients("acme", "refused", 0);
        m.shed_counter(Door::Grpc).inc();
        m.signing_seconds.observe(0.002);
        let text = m.render();
        for expected in [
            "sluice_ingest_submissions_total{door=\"http\",outcome=\"accepted\"} 1",
            "sluice_ingest_submissions_total{door=\"grpc\",outcome=\"invalid\"} 1",
            "sluice_ingest_recipients_total{outcome=\"suppressed\"} 1",
            "sluice_ingest_requests_shed_total{door=\"grpc\"} 1",
            "sluice_ingest_tenant_recipients_total{tenant=\"acme\",outcome=\"published\"} 2",
            "# UNIT sluice_ingest_signing_seconds seconds",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        assert!(!text.contains("outcome=\"refused\""), "{text}");
        sluice_node::metrics::assert_documented(&text, include_str!("../../../docs/metrics.md"));
    }
}
