//! Configuration of a webhook dispatcher (`sluice webhooks --config
//! webhooks.toml`; every key overridable by `SLUICE_WEBHOOKS_<KEY>`).
//! docs/webhooks.md holds the reference, checked against these doc
//! comments by a test.

use serde::{Deserialize, Serialize};
use sluice_node::{ConfigError, RoleConfig, Span};

/// A webhook dispatcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Kafka bootstrap servers, comma separated.
    pub brokers: String,
    /// Topic the events are read from (the recorder's).
    pub events_topic: String,
    /// Consumer group on the events topic; every dispatcher of one
    /// installation shares it (the events' partitions are split between
    /// them). Each retry topic is read by the group `<group>-<delay>`.
    pub group: String,
    /// Failed posts wait in the topics `<retry_topic_prefix>-<delay>`, one
    /// per delay of `retry_delays`.
    pub retry_topic_prefix: String,
    /// Every attempt is written to this topic; the recorder keeps it as the
    /// webhook's delivery log (Query's ListWebhookDeliveries).
    pub deliveries_topic: String,
    /// Waits before the second, third, ... attempt; the last repeats until
    /// `retry_window` has passed since the first attempt. At most 8.
    pub retry_delays: Vec<Span>,
    /// How long a post is retried after its first attempt; when it still
    /// fails after that, the webhook is disabled (a `webhook_disabled`
    /// event says so) and its further events are dropped until an operator
    /// puts it again.
    pub retry_window: Span,
    /// Longest one post may take, connection and TLS included; a slower
    /// receiver's post fails and is retried.
    pub timeout: Span,
    /// Posts in flight at once, over every webhook.
    pub max_concurrent_posts: usize,
    /// Posts in flight at once to one webhook; a post waits for a slot at
    /// most `timeout`, then in a retry topic, so a slow receiver does not
    /// hold up other tenants' posts.
    pub max_posts_per_webhook: usize,
    /// Records read but not settled, per topic; reading pauses beyond it.
    pub max_in_flight: usize,
    /// Whether URLs may lead to loopback, private, link-local or other
    /// non-public addresses. Off in production: a tenant's URL must not
    /// reach the installation's own network.
    pub allow_private_addresses: bool,
    /// Address of the recorder's Query service (`http://host:7402`).
    /// Events that name only their message — late bounces, complaints and
    /// `mailto:` unsubscribes from the inbound MX — take their tenant and
    /// recipient from its history. Unset: such events are not posted.
    pub query_addr: Option<String>,
    /// File holding the token sent to Query: a recorder credential of role
    /// operator (node tokens read no message). Unset: no token.
    pub query_token_file: Option<std::path::PathBuf>,
    /// The control service the tenants and their webhooks come from
    /// (docs/control.md); required.
    pub control: sluice_control_client::ControlSection,
    /// TLS of calls to control (docs/security.md).
    pub tls: sluice_node::tls::TlsConfig,
    /// How long posts in flight may take to finish after shutdown.
    pub drain_timeout: Span,
    /// Where `GET /metrics` is served (docs/metrics.md); without a token,
    /// only on a loopback address.
    pub metrics: sluice_node::metrics::MetricsSection,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            events_topic: "sluice.events".into(),
            group: "sluice-webhooks".into(),
            retry_topic_prefix: "sluice.webhooks.retry".into(),
            deliveries_topic: "sluice.webhooks.deliveries".into(),
            retry_delays: vec![
                Span::secs(30),
                Span::mins(2),
                Span::mins(10),
                Span::hours(1),
                Span::hours(4),
            ],
            retry_window: Span::hours(24),
            timeout: Span::secs(10),
            max_concurrent_posts: 64,
            max_posts_per_webhook: 8,
            max_in_flight: 1000,
            allow_private_addresses: false,
            query_addr: None,
            query_token_file: None,
            control: Default::default(),
            tls: Default::default(),
            drain_timeout: sluice_node::DEFAULT_DRAIN,
            metrics: Default::default(),
        }
    }
}

/// Most retry delays (each is a topic and a consumer).
pub const MAX_RETRY_DELAYS: usize = 8;

impl WebhooksConfig {
    /// The defaults, overridden by `file` when given, then by
    /// `SLUICE_WEBHOOKS_*` variables; refused with the key when invalid.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        sluice_node::config::load(file)
    }

    /// The retry topic of `delay`.
    pub fn retry_topic(&self, delay: Span) -> String {
        format!("{}-{delay}", self.retry_topic_prefix)
    }

    /// The consumer group of the retry topic of `delay`.
    pub fn retry_group(&self, delay: Span) -> String {
        format!("{}-{delay}", self.group)
    }
}

impl RoleConfig for WebhooksConfig {
    const ROLE: &'static str = "webhooks";

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| Err(ConfigError::invalid(Self::ROLE, key, reason));
        if self.retry_delays.is_empty() || self.retry_delays.len() > MAX_RETRY_DELAYS {
            return invalid(
                "retry_delays",
                "give 1 to 8 delays, e.g. [\"30s\", \"2m\", \"1h\"]",
            );
        }
        if self.retry_delays.iter().any(|d| d.as_duration().is_zero()) {
            return invalid("retry_delays", "a delay must be above 0");
        }
        let mut seen = self.retry_delays.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.retry_delays.len() {
            return invalid(
                "retry_delays",
                "each delay may appear once (each is a topic)",
            );
        }
        if self.timeout.as_duration().is_zero() {
            return invalid("timeout", "must be above 0");
        }
        if self.max_concurrent_posts == 0
            || self.max_in_flight == 0
            || self.max_posts_per_webhook == 0
        {
            return invalid(
                "max_concurrent_posts",
                "max_concurrent_posts, max_posts_per_webhook and max_in_flight must be above 0",
            );
        }
        if !self.control.enabled() {
            return invalid(
                "control.addr",
                "is required: the tenants' webhooks come from control",
            );
        }
        sluice_log::check_topic(&self.events_topic)
            .and_then(|()| sluice_log::check_topic(&self.retry_topic(self.retry_delays[0])))
            .and_then(|()| sluice_log::check_group(&self.group))
            .or_else(|e| invalid("retry_topic_prefix", &e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_in_docs_matches_the_code() {
        let doc = include_str!("../../../docs/webhooks.md");
        sluice_node::reference::check::<WebhooksConfig>(doc).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let base = "control.addr = \"http://127.0.0.1:1\"\n";
        for (extra, key) in [
            ("retry_delays = []", "retry_delays"),
            ("retry_delays = [\"1m\", \"1m\"]", "retry_delays"),
            ("timeout = \"0s\"", "timeout"),
            ("max_in_flight = 0", "max_concurrent_posts"),
            ("no_such_key = 1", "no_such_key"),
        ] {
            let err = sluice_node::config::from_toml::<WebhooksConfig>(&format!("{base}{extra}"))
                .unwrap_err();
            assert_eq!(err.key, key, "{extra}: {err}");
        }
        let err = sluice_node::config::from_toml::<WebhooksConfig>("").unwrap_err();
        assert_eq!(err.key, "control.addr");
        let ok = sluice_node::config::from_toml::<WebhooksConfig>(base).unwrap();
        assert_eq!(ok.retry_topic(Span::secs(30)), "sluice.webhooks.retry-30s");
    }
}
