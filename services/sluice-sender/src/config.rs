//! Configuration of a sender node: one TOML file, every value overridable by
//! an environment variable `SLUICE_SENDER_<SECTION>__<FIELD>` (e.g.
//! `SLUICE_SENDER_KAFKA__BROKERS=10.0.0.5:9092`), loaded by
//! `sluice_node::config`. Unknown keys are rejected. docs/sender.md holds
//! the reference, checked against these doc comments by a test.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use sluice_node::{ConfigError, RoleConfig};
use sluice_shaping::{EngineConfig, Span};

/// A sender node.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SenderConfig {
    /// Name of this node, used in logs and as the Kafka client id.
    pub node: String,
    /// The pool whose mail this node delivers. Its source IPs are the
    /// `shaping.ips` entries of this pool.
    pub pool: String,
    /// Kafka connection and topic names.
    #[serde(default)]
    pub kafka: KafkaSection,
    /// SMTP client behaviour.
    #[serde(default)]
    pub smtp: SmtpSection,
    /// Memory bounds.
    #[serde(default)]
    pub queues: QueueSection,
    /// Where the shaping engine's counters are kept across restarts.
    #[serde(default)]
    pub state: StateSection,
    /// Reputation signals from the recorder's Query service.
    #[serde(default)]
    pub reputation: ReputationSection,
    /// The metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// TLS of the metrics endpoint and of calls to control and Query
    /// (docs/security.md).
    #[serde(default)]
    pub tls: sluice_node::tls::TlsConfig,
    /// Source-IP leases: which of the pool's IPs this node may send from
    /// (docs/leases.md).
    #[serde(default)]
    pub leases: crate::leases::LeasesSection,
    /// Static routes: recipient domain (or `"*"` for all) → list of
    /// `host:port`. Checked before DNS; use for smart hosts and tests.
    #[serde(default)]
    pub routes: BTreeMap<String, Vec<SocketAddr>>,
    /// Use DNS (MX, then A/AAAA) for domains without a static route.
    #[serde(default = "yes")]
    pub dns: bool,
    /// Name servers to ask instead of the system's (`/etc/resolv.conf`),
    /// e.g. `["10.0.0.2:53"]`. Empty: the system's.
    #[serde(default)]
    pub dns_servers: Vec<SocketAddr>,
    /// The shaping engine: source IPs, sites, limits, backoff, warm-up, retries.
    /// See docs/shaping.md for every field.
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub shaping: EngineConfig,
    /// The control service this node takes its pool's source IPs, warm-up
    /// plans, site policies, providers and paused tenants from
    /// (docs/control.md). Unset: from this file.
    #[serde(default)]
    pub control: sluice_control_client::ControlSection,
    /// How topics are created when this node finds them missing (its pool's
    /// outbound topic, the delay tiers and the events topic).
    #[serde(default)]
    pub topics: sluice_log::TopicsConfig,
    /// How long deliveries in progress may take to finish (and their fates
    /// to be published) after shutdown before the node stops anyway; what is
    /// left is delivered again by the next owner of the partition.
    #[serde(default = "sluice_node::default_drain")]
    pub drain_timeout: Span,
}

/// Kafka settings.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    /// Outbound topic; default `sluice.outbound.<pool>`. Delay tiers are
    /// `<outbound_topic>.delay-<tier>`.
    pub outbound_topic: Option<String>,
    /// Events topic.
    pub events_topic: String,
    /// Consumer group; default `sluice-sender-<pool>`.
    pub group: Option<String>,
    /// How often consumed offsets are committed.
    pub commit_interval: Span,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            outbound_topic: None,
            events_topic: "sluice.events".into(),
            group: None,
            commit_interval: Span::secs(1),
        }
    }
}

/// SMTP client settings.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSection {
    /// Name announced in EHLO when an IP has none of its own below.
    pub ehlo_name: String,
    /// EHLO name per source IP (should match the IP's PTR record).
    pub ehlo_names: BTreeMap<IpAddr, String>,
    /// Port for hosts found through DNS.
    pub port: u16,
    /// TCP connect timeout.
    pub connect_timeout: Span,
    /// Time allowed for each reply (banner, commands).
    pub command_timeout: Span,
    /// Time allowed for the reply after the message content.
    pub data_timeout: Span,
    /// An idle connection is closed after this long.
    pub idle_timeout: Span,
    /// Use STARTTLS when the server offers it.
    pub opportunistic_tls: bool,
    /// Sites (by name) to which mail must only go over TLS.
    pub require_tls_sites: Vec<String>,
    /// PEM certificates trusted besides the public web PKI roots when a
    /// certificate is verified: servers of a site that requires TLS, MX
    /// hosts under an enforced MTA-STS policy, and MTA-STS policy servers
    /// (the opportunistic TLS of other mail is not verified). For private
    /// relays and tests.
    pub tls_trust_file: Option<std::path::PathBuf>,
    /// Apply MTA-STS (RFC 8461) to domains routed through DNS: fetch each
    /// domain's policy over HTTPS when it publishes one; under `enforce`,
    /// deliver only to the MX hosts it names, with their certificates
    /// verified (docs/security.md, "Outbound TLS").
    pub mta_sts: bool,
    /// Port of the MTA-STS policy servers (`https://mta-sts.<domain>:<port>`);
    /// 443 but for tests and proxies.
    pub mta_sts_port: u16,
}

impl Default for SmtpSection {
    fn default() -> Self {
        Self {
            ehlo_name: "localhost".into(),
            ehlo_names: BTreeMap::new(),
            port: 25,
            connect_timeout: Span::secs(30),
            command_timeout: Span::secs(60),
            data_timeout: Span::mins(5),
            idle_timeout: Span::secs(5),
            opportunistic_tls: true,
            require_tls_sites: Vec::new(),
            tls_trust_file: None,
            mta_sts: true,
            mta_sts_port: 443,
        }
    }
}

/// Memory bounds: whatever the traffic, a node holds at most this much.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// Records read from the log whose fate is not yet durable. The consumer
    /// stops polling at this bound (the poll that crosses it may bring up to
    /// 500 more).
    pub max_in_flight: usize,
    /// Messages waiting in one site's ready queue; beyond it, new messages for
    /// the site go to a delay tier (overflow).
    pub max_per_site: usize,
    /// The shortest wait of an overflowed message before it is read again
    /// (also the wait while the site's drain rate is unknown, and the wait of
    /// a paused tenant's mail).
    pub overflow_delay: Span,
    /// The longest wait of an overflowed message. In between, a message waits
    /// as long as the site needs to send what is ahead of it (its ready
    /// queue and the messages parked before it, at the rate it drained over
    /// the last five minutes). A message that waited this long and
    /// overflows again may take a slot as far as the next longer delay
    /// tier, so a throttled site's backlog is re-written about once per
    /// this span at first, then once per the longest tier. A raised limit
    /// wakes parked mail at once (docs/sender.md, "Waking parked mail").
    pub max_overflow_hold: Span,
}

impl Default for QueueSection {
    fn default() -> Self {
        Self {
            max_in_flight: 20_000,
            max_per_site: 2_000,
            overflow_delay: Span::mins(1),
            max_overflow_hold: Span::hours(1),
        }
    }
}

/// Persistence of the shaping engine's state (rate and daily counters,
/// warm-up progress, backoff) so that limits hold across restarts.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StateSection {
    /// JSON file the state is saved to and restored from; unset: state starts
    /// fresh at every start (only for tests and throwaway nodes).
    pub file: Option<std::path::PathBuf>,
    /// How often the state is saved while running (it is also saved when the
    /// node drains). A node killed with -9 loses the counting of at most this
    /// long.
    pub interval: Span,
}

impl Default for StateSection {
    fn default() -> Self {
        Self {
            file: None,
            interval: Span::secs(1),
        }
    }
}

/// Following the recorder's reputation table: per (source IP, site) signals
/// pause or slow a path; a `hold` holds the IP's warm-up day.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationSection {
    /// Address of the Query service, e.g. `http://127.0.0.1:7402`. Unset: the
    /// node ignores reputation (it still reacts to replies).
    pub query_addr: Option<String>,
    /// File holding the token sent to the Query service as `authorization:
    /// Bearer` (a credential of the recorder with role `node`). Unset: no
    /// token (only a recorder with `allow_unauthenticated` answers).
    pub token_file: Option<std::path::PathBuf>,
    /// How often the table is read.
    pub interval: Span,
}

impl Default for ReputationSection {
    fn default() -> Self {
        Self {
            query_addr: None,
            token_file: None,
            interval: Span::secs(30),
        }
    }
}

pub use sluice_node::metrics::MetricsSection;

fn yes() -> bool {
    true
}

impl RoleConfig for SenderConfig {
    const ROLE: &'static str = "sender";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.pool.trim().is_empty() {
            return Err(invalid("pool", "must not be empty"));
        }
        if self.control.enabled() {
            crate::control::check_file(self)?;
        } else if !self.shaping.ips.iter().any(|ip| ip.pool == self.pool) {
            return Err(invalid(
                "shaping.ips",
                format!(
                    "no source IP belongs to pool `{}`; add one with pool = \"{}\"",
                    self.pool, self.pool
                ),
            ));
        }
        if self.queues.max_in_flight == 0 || self.queues.max_per_site == 0 {
            return Err(invalid(
                "queues",
                "max_in_flight and max_per_site must be at least 1",
            ));
        }
        if self.queues.max_overflow_hold < self.queues.overflow_delay {
            return Err(invalid(
                "queues.max_overflow_hold",
                "must be at least queues.overflow_delay",
            ));
        }
        self.leases
            .check()
            .map_err(|reason| invalid("leases", reason))?;
        if !self.dns && self.routes.is_empty() {
            return Err(invalid(
                "routes",
                "DNS is off and no static route is set: no mail could go anywhere",
            ));
        }
        Ok(())
    }
}

impl SenderConfig {
    /// Loads `file` (if given), then `SLUICE_SENDER_*` environment overrides,
    /// then validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        sluice_node::config::load(file)
    }

    /// Parses a TOML document (no environment), then validates.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        sluice_node::config::from_toml(text)
    }

    pub fn outbound_topic(&self) -> String {
        self.kafka
            .outbound_topic
            .clone()
            .unwrap_or_else(|| format!("sluice.outbound.{}", self.pool))
    }

    pub fn delay_topic(&self, tier: &str) -> String {
        format!("{}.delay-{tier}", self.outbound_topic())
    }

    /// The longest an overflowed message waits between two reads:
    /// `queues.max_overflow_hold`, or the longest delay tier for mail
    /// parked again (docs/sender.md, step 3).
    pub fn longest_hold(&self) -> Span {
        let tiers = self.shaping.retry.tiers.iter().copied();
        tiers.fold(self.queues.max_overflow_hold, Span::max)
    }

    /// The pool's fate index topic (docs/fate-index.md).
    pub fn fates_topic(&self) -> String {
        format!("{}.fates", self.outbound_topic())
    }

    pub fn group(&self) -> String {
        self.kafka
            .group
            .clone()
            .unwrap_or_else(|| format!("sluice-sender-{}", self.pool))
    }

    /// This node's source IPs (those of its pool).
    pub fn source_ips(&self) -> Vec<IpAddr> {
        self.shaping
            .ips
            .iter()
            .filter(|ip| ip.pool == self.pool)
            .map(|ip| ip.address)
            .collect()
    }

    pub fn ehlo_name(&self, ip: IpAddr) -> &str {
        self.smtp
            .ehlo_names
            .get(&ip)
            .unwrap_or(&self.smtp.ehlo_name)
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid(SenderConfig::ROLE, field, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        node = "s1"
        pool = "shared"
        dns = false
        [routes]
        "*" = ["127.0.0.2:2525"]
        [[shaping.ips]]
        address = "127.0.0.10"
        pool = "shared"
    "#;

    #[test]
    fn minimal_config_has_derived_topic_and_group() {
        let c = SenderConfig::from_toml(MINIMAL).unwrap();
        assert_eq!(c.outbound_topic(), "sluice.outbound.shared");
        assert_eq!(c.delay_topic("1m"), "sluice.outbound.shared.delay-1m");
        assert_eq!(c.group(), "sluice-sender-shared");
        assert_eq!(
            c.source_ips(),
            vec!["127.0.0.10".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let text = MINIMAL.replace("dns = false", "dns = false\nspeed = 11");
        let err = SenderConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("speed"), "{err}");
    }

    #[test]
    fn an_overflow_hold_shorter_than_the_overflow_delay_is_refused() {
        let text =
            format!("{MINIMAL}\n[queues]\noverflow_delay = \"5m\"\nmax_overflow_hold = \"1m\"\n");
        let err = SenderConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("queues.max_overflow_hold"), "{err}");
        let c = SenderConfig::from_toml(MINIMAL).unwrap();
        assert_eq!(c.queues.max_overflow_hold, Span::hours(1));
    }

    #[test]
    fn leases_that_would_lapse_between_renewals_are_refused() {
        let text = format!("{MINIMAL}\n[leases]\nttl = \"10s\"\nrenew_interval = \"8s\"\n");
        let err = SenderConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("leases") && err.contains("ttl"), "{err}");
        let c = SenderConfig::from_toml(MINIMAL).unwrap();
        assert_eq!(
            c.leases.kind,
            crate::LeaseKind::Local,
            "one node by default"
        );
    }

    #[test]
    fn a_pool_without_ips_is_refused_with_the_field_name() {
        let text = MINIMAL.replace(
            "pool = \"shared\"\n        dns",
            "pool = \"other\"\n        dns",
        );
        let err = SenderConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("shaping.ips"), "{err}");
    }
}

#[cfg(test)]
mod reference_tests {
    #[test]
    fn the_reference_in_docs_matches_the_code() {
        let doc = include_str!("../../../docs/sender.md");
        sluice_node::reference::check::<super::SenderConfig>(doc).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/sender.toml");
        let config = SenderConfig::load(Some(&path)).expect("deploy/examples/sender.toml loads");
        assert_eq!(config.source_ips().len(), 2);
        assert_eq!(config.outbound_topic(), "sluice.outbound.shared");
        assert!(config.metrics.listen.is_some());
        assert_eq!(config.leases.kind, crate::LeaseKind::Cql);
        sluice_shaping::Engine::new(config.shaping).expect("its shaping section builds an engine");
    }
}
