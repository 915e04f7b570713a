//! The dispatcher's metrics (docs/metrics.md), served on `metrics.listen`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of a post.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered` (a 2xx answer) or `failed`.
    pub outcome: String,
}

/// Labels of a post left undone or put off.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Dropped: `gave_up`, `disabled`, `removed`, `no_tenant` or
    /// `malformed`; skipped: `busy` or `failing`.
    pub reason: String,
}

/// All metrics of one dispatcher.
#[derive(Debug)]
pub struct WebhookMetrics {
    registry: Registry,
    pub posts: Family<OutcomeLabels, Counter>,
    pub retries: Counter,
    pub dropped: Family<ReasonLabels, Counter>,
    pub disabled: Counter,
    pub skipped: Family<ReasonLabels, Counter>,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice_webhooks");
        let posts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "posts",
            "Posts made to webhook endpoints, by outcome (delivered: a 2xx answer; failed: anything else, timeouts included)",
            posts.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "retries",
            "Failed posts written to a retry topic to be tried again",
            retries.clone(),
        );
        let dropped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "dropped",
            "Posts not made or given up, by reason (gave_up: failing for the whole retry window; disabled or removed webhook; no_tenant: an event without a tenant; malformed record)",
            dropped.clone(),
        );
        let disabled = Counter::default();
        registry.register(
            "disabled",
            "Webhooks this dispatcher disabled after their posts failed for the whole retry window",
            disabled.clone(),
        );
        let skipped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "skipped",
            "Posts not made when due but put in a retry topic, by reason (busy: the webhook had max_posts_per_webhook in flight; failing: its last posts failed)",
            skipped.clone(),
        );
        Self {
            skipped,
            registry,
            posts,
            retries,
            dropped,
            disabled,
        }
    }

    /// Counts one post.
    pub fn post(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        let labels = OutcomeLabels {
            outcome: outcome.into(),
        };
        self.posts.get_or_create(&labels).inc();
    }

    /// Counts one post left undone.
    pub fn dropped_one(&self, reason: &str) {
        let labels = ReasonLabels {
            reason: reason.into(),
        };
        self.dropped.get_or_create(&labels).inc();
    }

    /// Counts one post put off.
    pub fn skipped_one(&self, reason: &str) {
        let labels = ReasonLabels {
            reason: reason.into(),
        };
        self.skipped.get_or_create(&labels).inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        sluice_node::metrics::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_is_listed_in_the_docs() {
        let m = WebhookMetrics::new();
        m.post(true);
        m.dropped_one("disabled");
        let text = m.render();
        assert!(
            text.contains("sluice_webhooks_posts_total{outcome=\"delivered\"} 1"),
            "{text}"
        );
        sluice_node::metrics::assert_documented(&text, include_str!("../../../docs/metrics.md"));
    }
}
