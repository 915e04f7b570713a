//! Ingest node configuration: one TOML file, every value overridable by an
//! environment variable `SLUICE_INGEST_<SECTION>__<FIELD>` (double underscore
//! between levels), loaded by `sluice_node::config`. The doc comments below
//! are the reference; docs/ingest.md reproduces them and a test checks it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_node::{ConfigError, RoleConfig, Span};

use crate::IngestError;

/// The whole ingest node configuration.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Addresses the `sluice ingest` command binds (library callers pass bound listeners).
    #[serde(default)]
    pub listen: ListenConfig,
    /// Where records go in Kafka and how long a publish may take.
    #[serde(default)]
    pub kafka: KafkaSection,
    /// Size, recipient and concurrency limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// SMTP submission settings (ports 587 and 465).
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// One-click unsubscribe links (RFC 8058).
    pub unsubscribe: UnsubscribeConfig,
    /// Open and click tracking links (docs/feedback.md).
    #[serde(default)]
    pub tracking: TrackingConfig,
    /// Replay window of idempotency keys.
    #[serde(default)]
    pub idempotency: IdempotencyConfig,
    /// Tenant quotas shared by every ingest node that shares its keys
    /// through `idempotency.query_addr`.
    #[serde(default)]
    pub quota: QuotaConfig,
    /// Where to read the recorder's suppressions (hard bounces, complaints,
    /// unsubscribes), checked for every submission besides `tenants[].suppressed`.
    #[serde(default)]
    pub suppressions: SuppressionsConfig,
    /// Names of the sending pools this node accepts mail for.
    #[serde(default = "default_pools")]
    pub pools: Vec<String>,
    /// Tenants allowed to submit mail. Must be empty when `control.addr`
    /// is set: the tenants then come from control.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// The control service this node takes its tenants and pools from
    /// (docs/control.md). Unset: from this file.
    #[serde(default)]
    pub control: sluice_control_client::ControlSection,
    /// How topics are created when this node finds them missing (outbound
    /// topics of its pools and the events topic).
    #[serde(default)]
    pub topics: sluice_log::TopicsConfig,
    /// TLS of the gRPC and HTTP listeners and of calls to control and Query
    /// (docs/security.md); SMTP submission has its own certificate
    /// (`smtp.cert_file`). Without a certificate, gRPC and HTTP must be on
    /// loopback addresses.
    #[serde(default)]
    pub tls: sluice_node::tls::TlsConfig,
    /// Where `GET /metrics` is served (docs/metrics.md); `sluice dev`
    /// serves every role's metrics on `sender.metrics` instead.
    #[serde(default)]
    pub metrics: sluice_node::metrics::MetricsSection,
    /// How long submissions in flight may take to be acknowledged after
    /// shutdown before the node stops anyway (their clients get no answer
    /// and retry with their idempotency keys).
    #[serde(default = "sluice_node::default_drain")]
    pub drain_timeout: Span,
}

/// Listen addresses of the four front doors.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// gRPC `sluice.v1.Ingest`. Default `127.0.0.1:7070`.
    pub grpc: String,
    /// HTTP JSON API. Default `127.0.0.1:7080`.
    pub http: String,
    /// SMTP submission with STARTTLS (port 587 in production). Default `127.0.0.1:2587`.
    pub smtp_submission: String,
    /// SMTP submission over implicit TLS (port 465 in production). Default `127.0.0.1:2465`.
    pub smtp_implicit_tls: String,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            grpc: "127.0.0.1:7070".into(),
            http: "127.0.0.1:7080".into(),
            smtp_submission: "127.0.0.1:2587".into(),
            smtp_implicit_tls: "127.0.0.1:2465".into(),
        }
    }
}

/// Kafka settings of the ingest producer.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// Bootstrap servers, comma separated `host:port` pairs.
    pub brokers: String,
    /// Outbound topic of a pool is this prefix followed by the pool name.
    pub outbound_topic_prefix: String,
    /// Topic of `Event` records (accepted, suppressed).
    pub events_topic: String,
    /// Time the message log may take to acknowledge a submission before it
    /// fails as unavailable.
    pub publish_timeout: Span,
    /// Records this node may have waiting for the log's acknowledgement before
    /// new submissions are refused as backpressure.
    pub max_queued_records: u32,
    /// How long the Kafka producer waits to fill a request with more records
    /// (`linger.ms`); every submission waits up to this long for its
    /// acknowledgement, and a longer wait sends fewer, larger requests.
    pub linger: Span,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            outbound_topic_prefix: "sluice.outbound.".into(),
            events_topic: "sluice.events".into(),
            publish_timeout: Span::secs(30),
            max_queued_records: 100_000,
            linger: Span(5),
        }
    }
}

/// Limits that protect the node and the cluster.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest message accepted, in bytes, after rendering. Default 25 MB (26214400).
    pub max_message_bytes: usize,
    /// Most recipients in one message. Default 1000.
    pub max_recipients: usize,
    /// Bytes of rendered messages (size × recipients) held in memory across all
    /// submissions in flight; beyond it submissions are refused as backpressure.
    /// Default 1 GiB.
    pub max_in_flight_bytes: usize,
    /// Threads that sign DKIM concurrently (0 = one per CPU).
    pub signing_threads: usize,
    /// How long after `not_before` undelivered mail expires. Default 5d.
    pub message_lifetime: Span,
    /// Connections one listener (gRPC, HTTP, each SMTP port) keeps open at
    /// once; more are closed on arrival (SMTP says 421 first). Default 4096.
    pub max_connections: usize,
    /// Connections one client address may keep open on one listener.
    /// Default 64.
    pub max_connections_per_ip: usize,
    /// Requests in progress at once on one listener (gRPC, HTTP; a stream
    /// counts while it lasts); more are answered at once with "try later"
    /// (gRPC UNAVAILABLE, HTTP 503 with `Retry-After`). Default 1024.
    pub max_requests: usize,
    /// Longest a client may take to send an HTTP request body (slower:
    /// 408) or a unary gRPC message (slower: an error status); nothing is
    /// accepted. SendBatch streams are exempt. Default 60s.
    pub body_timeout: Span,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 25 * 1024 * 1024,
            max_recipients: 1000,
            max_in_flight_bytes: 1 << 30,
            signing_threads: 0,
            message_lifetime: Span::days(5),
            max_connections: 4096,
            max_connections_per_ip: 64,
            max_requests: 1024,
            body_timeout: Span::secs(60),
        }
    }
}

/// SMTP submission settings.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Name in the greeting and EHLO reply, and of the generated certificate.
    pub hostname: String,
    /// PEM certificate chain; empty means a self-signed certificate generated at start.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Time a client may stay idle between commands.
    pub idle_timeout: Span,
    /// Time a client has for the whole DATA body, after the 354; a body
    /// that takes longer is refused with 421 and the session ends.
    pub data_timeout: Span,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            cert_file: None,
            key_file: None,
            idle_timeout: Span::mins(5),
            data_timeout: Span::mins(10),
        }
    }
}

/// One-click unsubscribe (RFC 8058) settings.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeConfig {
    /// Base URL of the unsubscribe endpoint; the signed token is appended as a path segment.
    pub base_url: String,
    /// HMAC-SHA256 key that signs tokens (at least 32 characters). Same on every node.
    pub secret: String,
}

/// Open and click tracking settings.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Base URL of the open pixel and click redirects, e.g.
    /// `https://t.example.com/t`; the HTTP listener serves `GET <path>/o/..`
    /// and `GET <path>/c/..` under its path. Empty (the default): this node
    /// refuses submissions that ask for tracking. Links are signed with a
    /// key derived from `unsubscribe.secret`.
    pub base_url: String,
}

/// Idempotency-key replay settings.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// Time a key is remembered. Default 24 hours.
    pub ttl: Span,
    /// Keys this node remembers at most when it keeps them itself (oldest
    /// forgotten first). Default 100000.
    pub max_entries: usize,
    /// URL of the recorder's Query service, e.g. `http://127.0.0.1:7402`,
    /// where the keys of every ingest node live (in the ledger, surviving
    /// restarts). Empty (the default): this node keeps its keys in memory,
    /// so a retry that reaches another node is not recognised. When set and
    /// it does not answer within `timeout`, a keyed submission is refused as
    /// unavailable (clients retry).
    pub query_addr: String,
    /// File holding the token sent to `query_addr` as `authorization:
    /// Bearer` (a recorder credential with role `node`). Unset: no token
    /// (only a recorder with `allow_unauthenticated` answers).
    pub token_file: Option<PathBuf>,
    /// Time one claim or settle at `query_addr` may take.
    pub timeout: Span,
    /// How long a claim holds a key when its node dies before answering;
    /// a retry after that starts over.
    pub lease: Span,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: Span::hours(24),
            max_entries: 100_000,
            query_addr: String::new(),
            token_file: None,
            timeout: Span::secs(2),
            lease: Span::mins(2),
        }
    }
}

/// How tenant quotas hold across ingest nodes (docs/ingest.md, "Quotas
/// across nodes").
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Divide every tenant's `rate_quota` among the live ingest nodes when
    /// `idempotency.query_addr` is set: this node heartbeats to that Query
    /// service and enforces `rate_quota / live nodes` (rounded up, at least
    /// 1). false, or no `query_addr`: this node enforces the whole quota
    /// (N nodes let N × quota through).
    pub shared: bool,
    /// How often this node tells the Query service it is alive (and learns
    /// how many ingest nodes are).
    pub heartbeat_interval: Span,
    /// How long a node counts as alive after its last heartbeat (1s to
    /// 60s, more than `heartbeat_interval`): how long a dead node's share
    /// stays missing from the others.
    pub node_ttl: Span,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            shared: true,
            heartbeat_interval: Span::secs(1),
            node_ttl: Span::secs(5),
        }
    }
}

/// The recorder's suppressions, read through its Query service.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SuppressionsConfig {
    /// URL of the recorder's Query service, e.g. `http://127.0.0.1:7402`.
    /// Empty (the default): only the configured `tenants[].suppressed` lists
    /// apply. When set and it does not answer within `timeout`, the
    /// submission is refused as unavailable (fail closed; clients retry).
    pub query_addr: String,
    /// File holding the token sent to `query_addr` as `authorization:
    /// Bearer` (a recorder credential with role `node`; may be the file of
    /// `idempotency.token_file`). Unset: no token.
    pub token_file: Option<PathBuf>,
    /// Time one check (connect and call) may take. Default 2s.
    pub timeout: Span,
}

impl Default for SuppressionsConfig {
    fn default() -> Self {
        Self {
            query_addr: String::new(),
            token_file: None,
            timeout: Span::secs(2),
        }
    }
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant name, copied into every envelope and event.
    pub name: String,
    /// Hashed API keys (`sha256$<salt hex>$<digest hex>`, see docs/ingest.md).
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// SMTP submission credentials.
    #[serde(default)]
    pub smtp_users: Vec<SmtpUserConfig>,
    /// Domains the tenant may send from, with their DKIM keys.
    #[serde(default)]
    pub domains: Vec<DomainConfig>,
    /// Pool used when a submission names none.
    pub default_pool: String,
    /// Recipients per second the tenant may submit (burst of one second); 0 = unlimited.
    #[serde(default)]
    pub rate_quota: u32,
    /// Domain of VERP return paths; empty means the From domain.
    #[serde(default)]
    pub bounce_domain: String,
    /// Suppressed recipient addresses (case-insensitive).
    #[serde(default)]
    pub suppressed: Vec<String>,
    /// Refuse the tenant's submissions (403) while true.
    #[serde(default)]
    pub paused: bool,
    /// Trace every submission of the tenant whatever the sampling ratio
    /// (when the node exports traces: `--otlp-endpoint`).
    #[serde(default)]
    pub trace: bool,
    /// Report mail submitted over SMTP that finally bounces or expires to
    /// the submission's MAIL FROM with a delivery status notification
    /// (RFC 3464); mail from the null sender `<>` gets none.
    #[serde(default)]
    pub smtp_dsn: bool,
    /// Allow submissions to ask for open and click tracking
    /// (`tracking.opens`, `tracking.clicks`); off: such submissions are
    /// refused.
    #[serde(default)]
    pub tracking: bool,
}

/// SMTP AUTH credentials of a tenant.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpUserConfig {
    /// Login name.
    pub username: String,
    /// Hashed password: an Argon2id PHC string from `sluice hash-secret --password`
    /// (`sha256$<salt hex>$<digest hex>` is accepted too).
    pub password_hash: String,
}

/// A sending domain of a tenant.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// Domain name, e.g. `mail.example.com`.
    pub name: String,
    /// DKIM selector; empty means mail from this domain is not signed.
    #[serde(default)]
    pub dkim_selector: String,
    /// `rsa-sha256` (default) or `ed25519-sha256`.
    #[serde(default = "default_dkim_algorithm")]
    pub dkim_algorithm: String,
    /// PEM private key (PKCS#8, or PKCS#1 for RSA) of the selector.
    #[serde(default)]
    pub dkim_private_key_file: Option<PathBuf>,
}

fn default_pools() -> Vec<String> {
    vec!["shared".into()]
}

fn default_dkim_algorithm() -> String {
    "rsa-sha256".into()
}

impl RoleConfig for IngestConfig {
    const ROLE: &'static str = "ingest";

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: String, reason: String| Err(ConfigError::invalid(Self::ROLE, key, reason));
        if self.unsubscribe.secret.len() < 32 {
            return bad(
                "unsubscribe.secret".into(),
                "must be at least 32 characters".into(),
            );
        }
        let base = &self.tracking.base_url;
        if !(base.is_empty() || base.starts_with("https://") || base.starts_with("http://")) {
            return bad(
                "tracking.base_url".into(),
                "must be an http:// or https:// URL (or empty to turn tracking off)".into(),
            );
        }
        if self.control.enabled() && !self.tenants.is_empty() {
            return bad(
                "tenants".into(),
                "tenants come from control when control.addr is set; remove [[tenants]] from this file and add them with `sluice admin tenant put`".into(),
            );
        }
        let (beat, ttl) = (self.quota.heartbeat_interval.0, self.quota.node_ttl.0);
        if !(1_000..=60_000).contains(&ttl) || ttl <= beat {
            return bad(
                "quota.node_ttl".into(),
                format!(
                    "must be between 1s and 60s and longer than quota.heartbeat_interval ({beat} ms), not {ttl} ms"
                ),
            );
        }
        if beat == 0 {
            return bad(
                "quota.heartbeat_interval".into(),
                "must be more than 0".into(),
            );
        }
        for tenant in &self.tenants {
            if !self.pools.contains(&tenant.default_pool) {
                return bad(
                    format!("tenants.{}.default_pool", tenant.name),
                    format!("pool {:?} is not in `pools`", tenant.default_pool),
                );
            }
        }
        Ok(())
    }
}

impl IngestConfig {
    /// Loads `file` (if any), then applies `SLUICE_INGEST_*` overrides.
    pub fn load(file: Option<&Path>) -> Result<Self, IngestError> {
        Ok(sluice_node::config::load(file)?)
    }

    /// Parses a TOML string (tests and tools); no environment overrides.
    pub fn from_toml(text: &str) -> Result<Self, IngestError> {
        Ok(sluice_node::config::from_toml(text)?)
    }

    /// Kafka client settings of this node.
    pub fn kafka_client(&self) -> sluice_log::KafkaConfig {
        sluice_log::KafkaConfig {
            linger: self.kafka.linger.into(),
            ..sluice_log::KafkaConfig::new(self.kafka.brokers.clone(), "sluice-ingest")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [unsubscribe]
        base_url = "https://u.example/u"
        secret = "0123456789abcdef0123456789abcdef"
    "#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let config = IngestConfig::from_toml(MINIMAL).expect("parses");
        assert_eq!(config.limits.max_message_bytes, 26_214_400);
        assert_eq!(config.kafka.events_topic, "sluice.events");
        assert_eq!(config.kafka.outbound_topic_prefix, "sluice.outbound.");
        assert_eq!(config.idempotency.ttl, Span::hours(24));
        assert_eq!(config.pools, vec!["shared".to_owned()]);
        assert_eq!(config.suppressions.query_addr, "");
        assert_eq!(config.suppressions.timeout, Span::secs(2));
        assert!(config.quota.shared);
        assert_eq!(config.quota.heartbeat_interval, Span::secs(1));
        assert_eq!(config.quota.node_ttl, Span::secs(5));
    }

    #[test]
    fn quota_node_ttl_must_outlast_the_heartbeat() {
        let text = format!("{MINIMAL}\n[quota]\nheartbeat_interval = \"2s\"\nnode_ttl = \"2s\"\n");
        let err = IngestConfig::from_toml(&text).expect_err("too short");
        assert!(err.to_string().contains("quota.node_ttl"), "{err}");
    }

    #[test]
    fn suppressions_section_parses_and_rejects_unknown_keys() {
        let text = format!(
            "{MINIMAL}\n[suppressions]\nquery_addr = \"http://127.0.0.1:7402\"\ntimeout = \"500ms\"\n"
        );
        let config = IngestConfig::from_toml(&text).expect("parses");
        assert_eq!(config.suppressions.query_addr, "http://127.0.0.1:7402");
        assert_eq!(config.suppressions.timeout, Span(500));
        let typo = format!("{MINIMAL}\n[suppressions]\nquery_adr = \"http://x\"\n");
        let err = IngestConfig::from_toml(&typo).expect_err("typo rejected");
        assert!(err.to_string().contains("query_adr"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let text = format!("{MINIMAL}\n[limits]\nmax_mesage_bytes = 3\n");
        let err = IngestConfig::from_toml(&text).expect_err("typo rejected");
        assert!(err.to_string().contains("max_mesage_bytes"), "{err}");
    }

    #[test]
    fn tenant_default_pool_must_exist() {
        let text = format!("{MINIMAL}\n[[tenants]]\nname = \"a\"\ndefault_pool = \"nope\"\n");
        let err = IngestConfig::from_toml(&text).expect_err("unknown pool");
        assert!(err.to_string().contains("default_pool"), "{err}");
    }

    #[test]
    fn the_reference_in_docs_matches_the_code() {
        let doc = include_str!("../../../docs/ingest.md");
        sluice_node::reference::check::<IngestConfig>(doc).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ingest.toml");
        std::fs::write(&path, MINIMAL).expect("write");
        figment::Jail::expect_with(|jail| {
            jail.set_env("SLUICE_INGEST_KAFKA__EVENTS_TOPIC", "custom.events");
            let config = IngestConfig::load(Some(&path)).expect("loads");
            assert_eq!(config.kafka.events_topic, "custom.events");
            Ok(())
        });
    }
}
