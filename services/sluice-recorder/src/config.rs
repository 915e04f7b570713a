//! Recorder configuration: one TOML file, every value overridable by an
//! environment variable `SLUICE_RECORDER_<KEY>` (nested keys joined with
//! `__`, e.g. `SLUICE_RECORDER_REPUTATION__WINDOW_HOURS=12`), loaded by
//! `sluice_node::config`. docs/recorder.md holds the reference, checked
//! against these doc comments by a test.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_node::{ConfigError, RoleConfig, Span};

use crate::RecorderError;
use crate::reputation::Thresholds;

/// Configuration of a recorder node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RecorderConfig {
    /// Kafka bootstrap servers, comma separated `host:port` pairs.
    pub brokers: String,
    /// Where the ledger (events, counters, reputation) lives: `cassandra`
    /// (ScyllaDB/Cassandra at `cassandra`, in `keyspace`) or `embedded` (fjall
    /// in `data_dir`; one recorder process per directory).
    pub ledger: LedgerKind,
    /// Data directory of the embedded ledger (`ledger = "embedded"`); created
    /// when missing.
    pub data_dir: PathBuf,
    /// ScyllaDB/Cassandra contact points, comma separated `host:port` pairs.
    pub cassandra: String,
    /// Keyspace holding Sluice's tables. Letters, digits and `_`, at most 48.
    pub keyspace: String,
    /// Replication of the keyspace when `sluice migrate` creates it, as a CQL
    /// map, e.g. `{'class': 'NetworkTopologyStrategy', 'dc1': 3}`.
    pub replication: String,
    /// Kafka topic the events are read from.
    pub topic: String,
    /// Kafka consumer group of the recorders.
    pub group: String,
    /// Topic of the webhook dispatchers' delivery attempts, kept as each
    /// webhook's delivery log (read by the group `<group>.webhook-deliveries`).
    pub webhook_deliveries_topic: String,
    /// Address the Query gRPC service listens on (`sluice recorder` binds it).
    pub query_listen: String,
    /// Connections the Query listener keeps open at once; more are closed
    /// on arrival.
    pub query_max_connections: usize,
    /// Connections one client address may keep open to the Query listener.
    pub query_max_connections_per_ip: usize,
    /// Query requests in progress at once; more are answered UNAVAILABLE
    /// at once, to be retried with backoff.
    pub query_max_requests: usize,
    /// TLS of the Query listener and of calls to control
    /// (docs/security.md). Without a certificate the listener must be on a
    /// loopback address.
    pub tls: sluice_node::tls::TlsConfig,
    /// Where `GET /metrics` is served (docs/metrics.md).
    pub metrics: sluice_node::metrics::MetricsSection,
    /// Most events written per batch.
    pub batch_max_events: usize,
    /// Longest time a batch waits to fill before it is written.
    pub batch_max_wait: Span,
    /// Statements in flight at once while writing a batch.
    pub write_concurrency: usize,
    /// How long a message's status and history are kept (whole days; a
    /// part of a day counts as a day).
    pub status_ttl: Span,
    /// How long a de-duplication claim is kept (whole days); duplicates
    /// older than this count again.
    pub dedup_ttl: Span,
    /// First wait before retrying a failed write (or connection); doubles per
    /// failure.
    pub retry_initial: Span,
    /// Longest wait between retries of a failed write (or connection).
    pub retry_max: Span,
    /// Time allowed for one connection attempt to Cassandra.
    pub connect_timeout: Span,
    /// How long the batch being written may take to finish after shutdown
    /// before it is abandoned (it is read again at the next start).
    pub drain_timeout: Span,
    /// How reputation is computed and judged.
    pub reputation: ReputationConfig,
    /// How topics are created when the recorder finds them missing (only
    /// `topics.events` is used: the recorder creates the events topic).
    pub topics: sluice_log::TopicsConfig,
    /// Who may call the Query service: each entry's token, sent as
    /// `authorization: Bearer <token>`, grants its role (`admin`: every
    /// call; `operator`: every read; `node`: what senders and ingest call).
    /// Empty: the recorder refuses to start unless `allow_unauthenticated`
    /// is set.
    pub credentials: Vec<sluice_node::auth::Credential>,
    /// Serve every Query call without a token when `credentials` is empty.
    /// Only for a recorder reachable by trusted hosts alone; a warning is
    /// logged.
    pub allow_unauthenticated: bool,
    /// Tenants whose API keys may read their own messages, stats and
    /// suppressions here. Must be empty when `control.addr` is set: the
    /// tenants' key hashes then come from control.
    pub tenants: Vec<crate::auth::TenantKeysConfig>,
    /// The control service this recorder takes the tenants' API key hashes
    /// from (docs/control.md). Unset: from `tenants`.
    pub control: sluice_control_client::ControlSection,
}

/// The ledger back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LedgerKind {
    /// ScyllaDB/Cassandra (`sluice migrate` creates the schema).
    Cassandra,
    /// fjall in a data directory, for `sluice dev` and single machines.
    Embedded,
}

/// Rolling-window reputation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationConfig {
    /// Length of the rolling window, in whole hours from `1h` to `7d` (the
    /// current hour included).
    pub window: Span,
    /// Time between two computations of every known reputation.
    pub interval: Span,
    /// Rates and minimum volume that turn into signals.
    pub thresholds: Thresholds,
}

impl ReputationConfig {
    /// The window in hours.
    pub fn window_hours(&self) -> u32 {
        u32::try_from(self.window.0 / Span::hours(1).0).unwrap_or(u32::MAX)
    }
}

fn whole_days(span: Span) -> u32 {
    u32::try_from(span.0.div_ceil(Span::days(1).0)).unwrap_or(u32::MAX)
}

impl Default for ReputationConfig {
    fn default() -> Self {
        Self {
            window: Span::hours(24),
            interval: Span::secs(30),
            thresholds: Thresholds::default(),
        }
    }
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            ledger: LedgerKind::Cassandra,
            data_dir: PathBuf::from("sluice-data/recorder"),
            cassandra: "127.0.0.1:9042".into(),
            keyspace: "sluice".into(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            topic: "sluice.events".into(),
            webhook_deliveries_topic: "sluice.webhooks.deliveries".into(),
            group: "sluice-recorder".into(),
            query_listen: "127.0.0.1:7402".into(),
            query_max_connections: 4096,
            query_max_connections_per_ip: 256,
            query_max_requests: 1024,
            tls: sluice_node::tls::TlsConfig::default(),
            metrics: sluice_node::metrics::MetricsSection::default(),
            batch_max_events: 1000,
            batch_max_wait: Span(200),
            write_concurrency: 128,
            status_ttl: Span::days(30),
            dedup_ttl: Span::days(7),
            retry_initial: Span(100),
            retry_max: Span::secs(10),
            connect_timeout: Span::secs(10),
            drain_timeout: sluice_node::DEFAULT_DRAIN,
            reputation: ReputationConfig::default(),
            topics: sluice_log::TopicsConfig::default(),
            credentials: Vec::new(),
            allow_unauthenticated: false,
            tenants: Vec::new(),
            control: sluice_control_client::ControlSection::default(),
        }
    }
}

impl RoleConfig for RecorderConfig {
    const ROLE: &'static str = "recorder";

    fn validate(&self) -> Result<(), ConfigError> {
        self.check()
            .map_err(|(key, reason)| ConfigError::invalid(Self::ROLE, key, reason))?;
        let access = || -> Result<(), (String, String)> {
            sluice_node::auth::check(&self.credentials)?;
            crate::auth::TenantKeys::from_config(&self.tenants)?;
            if self.control.enabled() && !self.tenants.is_empty() {
                return Err((
                    "tenants".into(),
                    "must be empty when control.addr is set: the tenants' API keys come from control"
                        .into(),
                ));
            }
            Ok(())
        };
        access().map_err(|(key, reason)| ConfigError::invalid(Self::ROLE, key, reason))
    }
}

impl RecorderConfig {
    /// Defaults, then the TOML file (when given), then `SLUICE_RECORDER_*`;
    /// validated.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        sluice_node::config::load(path)
    }

    /// Checks values that would otherwise fail later: the key and the reason.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let bad = |field: &'static str, why: &str| Err((field, why.to_owned()));
        let ks = &self.keyspace;
        let ks_ok = !ks.is_empty()
            && ks.len() <= 48
            && ks.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && ks
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ks_ok {
            return bad(
                "keyspace",
                "use 1-48 lowercase letters, digits or `_`, not starting with a digit",
            );
        }
        if !self.replication.trim_start().starts_with('{') {
            return bad(
                "replication",
                "must be a CQL map such as {'class': 'SimpleStrategy', 'replication_factor': 1}",
            );
        }
        if self.ledger == LedgerKind::Embedded && self.data_dir.as_os_str().is_empty() {
            return bad(
                "data_dir",
                "must name a directory when ledger = \"embedded\"",
            );
        }
        if self.batch_max_events == 0 || self.write_concurrency == 0 {
            return bad("batch_max_events/write_concurrency", "must be at least 1");
        }
        if self.topic.is_empty() || self.group.is_empty() {
            return bad("topic/group", "must not be empty");
        }
        let window = self.reputation.window;
        if window < Span::hours(1)
            || window > Span::days(7)
            || !window.0.is_multiple_of(Span::hours(1).0)
        {
            return bad("reputation.window", "must be whole hours from 1h to 7d");
        }
        if self.status_ttl < Span::days(1) || self.dedup_ttl < Span::days(1) {
            return bad("status_ttl/dedup_ttl", "must be at least 1d");
        }
        if self.reputation.interval.0 < 100 {
            return bad("reputation.interval", "must be at least 100ms");
        }
        self.reputation
            .thresholds
            .validate()
            .map_err(|reason| ("reputation.thresholds", reason))
    }

    /// [`RoleConfig::validate`] as a recorder error.
    pub fn validated(&self) -> Result<(), RecorderError> {
        sluice_node::RoleConfig::validate(self).map_err(RecorderError::from)
    }

    /// `status_ttl` in days, rounded up.
    pub fn status_ttl_days(&self) -> u32 {
        whole_days(self.status_ttl)
    }

    /// `dedup_ttl` in days, rounded up.
    pub fn dedup_ttl_days(&self) -> u32 {
        whole_days(self.dedup_ttl)
    }

    pub(crate) fn batch_max_wait(&self) -> Duration {
        self.batch_max_wait.into()
    }

    pub(crate) fn kafka(&self) -> sluice_log::KafkaConfig {
        sluice_log::KafkaConfig::new(self.brokers.clone(), "sluice-recorder")
    }

    /// The CQL session configuration (`cassandra`, `connect_timeout_secs`).
    pub fn cql(&self) -> sluice_cql::CqlConfig {
        sluice_cql::CqlConfig {
            contact_points: self.cassandra.clone(),
            connect_timeout: self.connect_timeout.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn defaults_are_valid() {
        RecorderConfig::default()
            .validated()
            .expect("defaults validate");
    }

    #[test]
    fn the_reference_in_docs_matches_the_code() {
        let doc = include_str!("../../../docs/recorder.md");
        sluice_node::reference::check::<RecorderConfig>(doc).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn file_values_override_defaults_and_unknown_keys_are_rejected() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "keyspace = \"ks_one\"\n[reputation]\nwindow = \"6h\"").expect("write");
        let config = RecorderConfig::load(Some(file.path())).expect("loads");
        assert_eq!(config.keyspace, "ks_one");
        assert_eq!(config.reputation.window_hours(), 6);
        assert_eq!(config.topic, "sluice.events");

        let mut bad = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(bad, "keyspaec = \"typo\"").expect("write");
        let err = RecorderConfig::load(Some(bad.path())).expect_err("unknown key");
        assert!(err.to_string().contains("keyspaec"), "{err}");
    }

    #[test]
    fn bad_keyspace_names_the_field() {
        let config = RecorderConfig {
            keyspace: "drop table".into(),
            ..RecorderConfig::default()
        };
        let err = config.validated().expect_err("invalid");
        assert!(err.to_string().contains("keyspace"), "{err}");
    }
}
