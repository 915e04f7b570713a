//! The inbound role's metrics (docs/metrics.md), served on `metrics.listen`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of a message taken after DATA.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `recorded`, `unsubscribed`, `auto_reply`, `unrecognised`,
    /// `no_status`, `unmatched`, `too_big` or `log_unavailable`.
    pub outcome: String,
}

/// Labels of an event published.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `bounced`, `deferred`, `complained` or `unsubscribed`.
    pub kind: String,
}

/// Labels of a request to a link endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    /// `unsubscribe`, `open` or `click`.
    pub link: String,
    /// `recorded`, `refused`, `failed` or `unconfirmed`.
    pub outcome: String,
}

/// Every metric of one inbound node.
#[derive(Debug)]
pub struct InboundMetrics {
    registry: Registry,
    pub sessions: Counter,
    pub tls_sessions: Counter,
    pub refused_recipients: Counter,
    pub messages: Family<OutcomeLabels, Counter>,
    pub events: Family<KindLabels, Counter>,
    pub links: Family<LinkLabels, Counter>,
}

impl Default for InboundMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl InboundMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice_inbound");
        let sessions = Counter::default();
        registry.register(
            "sessions",
            "SMTP sessions the MX accepted",
            sessions.clone(),
        );
        let tls_sessions = Counter::default();
        registry.register(
            "tls_sessions",
            "SMTP sessions that went on inside TLS after STARTTLS",
            tls_sessions.clone(),
        );
        let refused_recipients = Counter::default();
        registry.register(
            "refused_recipients",
            "RCPT TO addresses refused: neither a VERP address this installation issued (a forged or altered tag included) nor a feedback address",
            refused_recipients.clone(),
        );
        let messages = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "messages",
            "Messages after DATA, by what became of them (recorded, unsubscribed, auto_reply, unrecognised, no_status, unmatched, too_big, log_unavailable)",
            messages.clone(),
        );
        let events = Family::<KindLabels, Counter>::default();
        registry.register(
            "events",
            "Events published: bounced, deferred (late bounces), complained (ARF) and unsubscribed (mailto: unsubscribes)",
            events.clone(),
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
            sessions,
            tls_sessions,
            refused_recipients,
            messages,
            events,
        }
    }

    /// Counts one message's outcome.
    pub fn message(&self, outcome: &str) {
        let labels = OutcomeLabels {
            outcome: outcome.to_owned(),
        };
        self.messages.get_or_create(&labels).inc();
    }

    /// Counts one published event of `kind`.
    pub fn event(&self, kind: &str) {
        let labels = KindLabels {
            kind: kind.to_owned(),
        };
        self.events.get_or_create(&labels).inc();
    }

    /// Counts one request to a link endpoint.
    pub fn link(&self, link: &str, outcome: &str) {
        let labels = LinkLabels {
            link: link.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.links.get_or_create(&labels).inc();
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        sluice_node::metrics::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_is_listed_in_the_docs() {
        let m = InboundMetrics::new();
        m.message("recorded");
        m.event("bounced");
        let text = m.render();
        assert!(
            text.contains("sluice_inbound_messages_total{outcome=\"recorded\"} 1"),
            "{text}"
        );
        sluice_node::metrics::assert_documented(&text, include_str!("../../../docs/metrics.md"));
    }
}
