//! Recorder configuration: one TOML file, every value overridable by an
//! environment variable `SLUICE_RECORDER_<FIELD>` (nested fields joined with
//! `__`, e.g. `SLUICE_RECORDER_REPUTATION__WINDOW_HOURS=12`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::RecorderError;
use crate::reputation::Thresholds;

/// Configuration of a recorder node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Address the Query gRPC service listens on (`sluice recorder` binds it).
    pub query_listen: String,
    /// Most events written per batch.
    pub batch_max_events: usize,
    /// Longest time, in milliseconds, a batch waits to fill before it is written.
    pub batch_max_wait_ms: u64,
    /// Statements in flight at once while writing a batch.
    pub write_concurrency: usize,
    /// Days a message's status and history are kept.
    pub status_ttl_days: u32,
    /// Days a de-duplication claim is kept; duplicates older than this count again.
    pub dedup_ttl_days: u32,
    /// First wait, in milliseconds, before retrying a failed write; doubles per failure.
    pub retry_initial_ms: u64,
    /// Longest wait, in milliseconds, between retries of a failed write.
    pub retry_max_ms: u64,
    /// Seconds to wait for Cassandra when the recorder starts.
    pub connect_timeout_secs: u64,
    /// How reputation is computed and judged.
    pub reputation: ReputationConfig,
}

/// The ledger back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerKind {
    /// ScyllaDB/Cassandra (`sluice migrate` creates the schema).
    Cassandra,
    /// fjall in a data directory, for `sluice dev` and single machines.
    Embedded,
}

/// Rolling-window reputation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationConfig {
    /// Hours in the rolling window (the current hour included).
    pub window_hours: u32,
    /// Seconds between two computations of every known reputation.
    pub interval_secs: u64,
    /// Rates and minimum volume that turn into signals.
    pub thresholds: Thresholds,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        Self {
            window_hours: 24,
            interval_secs: 30,
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
            group: "sluice-recorder".into(),
            query_listen: "127.0.0.1:7402".into(),
            batch_max_events: 1000,
            batch_max_wait_ms: 200,
            write_concurrency: 128,
            status_ttl_days: 30,
            dedup_ttl_days: 7,
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
            connect_timeout_secs: 10,
            reputation: ReputationConfig::default(),
        }
    }
}

impl RecorderConfig {
    /// Prefix of the environment variables that override the file.
    pub const ENV_PREFIX: &'static str = "SLUICE_RECORDER_";

    /// Defaults, then the TOML file (when given), then the environment;
    /// validated.
    pub fn load(path: Option<&Path>) -> Result<Self, RecorderError> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(path) = path {
            if !path.exists() {
                return Err(RecorderError::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Self = figment
            .merge(Env::prefixed(Self::ENV_PREFIX).split("__"))
            .extract()
            .map_err(|e| RecorderError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that would otherwise fail later, naming the field.
    pub fn validate(&self) -> Result<(), RecorderError> {
        let bad = |field: &str, why: &str| Err(RecorderError::Config(format!("{field}: {why}")));
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
        if self.reputation.window_hours == 0 || self.reputation.window_hours > 24 * 7 {
            return bad("reputation.window_hours", "must be between 1 and 168");
        }
        if self.reputation.interval_secs == 0 {
            return bad("reputation.interval_secs", "must be at least 1");
        }
        self.reputation
            .thresholds
            .validate()
            .map_err(RecorderError::Config)
    }

    pub(crate) fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }

    pub(crate) fn kafka(&self) -> sluice_log::KafkaConfig {
        sluice_log::KafkaConfig {
            brokers: self.brokers.clone(),
            client_id: "sluice-recorder".into(),
        }
    }

    /// The CQL session configuration (`cassandra`, `connect_timeout_secs`).
    pub fn cql(&self) -> sluice_cql::CqlConfig {
        sluice_cql::CqlConfig {
            contact_points: self.cassandra.clone(),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
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
            .validate()
            .expect("defaults validate");
    }

    #[test]
    fn file_values_override_defaults_and_unknown_keys_are_rejected() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(
            file,
            "keyspace = \"ks_one\"\n[reputation]\nwindow_hours = 6"
        )
        .expect("write");
        let config = RecorderConfig::load(Some(file.path())).expect("loads");
        assert_eq!(config.keyspace, "ks_one");
        assert_eq!(config.reputation.window_hours, 6);
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
        let err = config.validate().expect_err("invalid");
        assert!(err.to_string().contains("keyspace"), "{err}");
    }
}
