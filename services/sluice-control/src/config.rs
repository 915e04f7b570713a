//! Configuration of a control node (`sluice control --config control.toml`;
//! every key overridable by `SLUICE_CONTROL_<KEY>`). docs/control.md holds
//! the reference, checked against these doc comments by a test.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sluice_node::{ConfigError, RoleConfig, Span};

/// A control node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Address the Control gRPC service listens on (`sluice control` binds
    /// it; library callers pass a bound listener).
    pub listen: String,
    /// Where the configuration is kept: `cassandra` (ScyllaDB/Cassandra at
    /// `cassandra`, keyspace `keyspace`, migrated by `sluice migrate`) or
    /// `embedded` (fjall in `data_dir`, one process per directory).
    pub store: StoreKind,
    /// Data directory of the embedded store; created when missing.
    pub data_dir: PathBuf,
    /// ScyllaDB/Cassandra contact points, comma separated `host:port` pairs.
    pub cassandra: String,
    /// Keyspace holding the configuration tables.
    pub keyspace: String,
    /// How long open Watch streams and requests may take to finish after
    /// shutdown before they are cut.
    pub drain_timeout: Span,
    /// Who may call the service: each entry's token is sent as
    /// `authorization: Bearer <token>` and grants its role. Empty: control
    /// refuses to start unless `allow_unauthenticated` is set.
    pub credentials: Vec<Credential>,
    /// Serve every call without a token when `credentials` is empty. Only
    /// for a control reachable by trusted hosts alone; a warning is logged.
    pub allow_unauthenticated: bool,
    /// Watch streams this process serves at once; more are refused with
    /// RESOURCE_EXHAUSTED (each holds at most one batch of 256 changes).
    pub max_watchers: usize,
    /// Connections the listener keeps open at once; more are closed on
    /// arrival.
    pub max_connections: usize,
    /// Connections one client address may keep open.
    pub max_connections_per_ip: usize,
    /// Requests in progress at once (a Watch stream counts while it
    /// lasts); more are answered UNAVAILABLE at once, to be retried with
    /// backoff. Health checks are never refused.
    pub max_requests: usize,
    /// TLS of the listener (docs/security.md). Without a certificate the
    /// listener must be on a loopback address.
    pub tls: sluice_node::tls::TlsConfig,
    /// Where `GET /metrics` is served (docs/metrics.md).
    pub metrics: sluice_node::metrics::MetricsSection,
}

pub use sluice_node::auth::{Credential, Role};

/// Where control keeps the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// ScyllaDB/Cassandra.
    Cassandra,
    /// fjall in a data directory.
    Embedded,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7090".into(),
            store: StoreKind::Cassandra,
            data_dir: PathBuf::from("sluice-data/control"),
            cassandra: "127.0.0.1:9042".into(),
            keyspace: "sluice".into(),
            drain_timeout: sluice_node::DEFAULT_DRAIN,
            credentials: Vec::new(),
            allow_unauthenticated: false,
            max_watchers: 1024,
            max_connections: 1024,
            max_connections_per_ip: 256,
            max_requests: 2048,
            tls: sluice_node::tls::TlsConfig::default(),
            metrics: sluice_node::metrics::MetricsSection::default(),
        }
    }
}

impl RoleConfig for ControlConfig {
    const ROLE: &'static str = "control";

    fn validate(&self) -> Result<(), ConfigError> {
        let keyspace_ok = !self.keyspace.is_empty()
            && self.keyspace.len() <= 48
            && self
                .keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !keyspace_ok {
            return Err(ConfigError::invalid(
                Self::ROLE,
                "keyspace",
                "letters, digits and `_` only, 1 to 48 of them",
            ));
        }
        sluice_node::auth::check(&self.credentials)
            .map_err(|(key, reason)| ConfigError::invalid(Self::ROLE, key, reason))?;
        if self.store == StoreKind::Cassandra && self.cassandra.trim().is_empty() {
            return Err(ConfigError::invalid(
                Self::ROLE,
                "cassandra",
                "no contact point; name at least one `host:port` or use store = \"embedded\"",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let config: ControlConfig = sluice_node::config::from_toml("").expect("defaults");
        assert_eq!(config, ControlConfig::default());
        let config: ControlConfig =
            sluice_node::config::from_toml("store = \"embedded\"\ndata_dir = \"/tmp/c\"\n")
                .expect("embedded");
        assert_eq!(config.store, StoreKind::Embedded);
        let err =
            sluice_node::config::from_toml::<ControlConfig>("keyspace = \"a-b\"\n").unwrap_err();
        assert_eq!(err.key, "keyspace");
    }

    #[test]
    fn credentials_are_checked_when_loaded() {
        let hash = sluice_node::secret::hash_secret("t");
        let ok = format!(
            "[[credentials]]\nname = \"ops\"\nrole = \"operator\"\ntoken_hash = \"{hash}\"\n"
        );
        let config: ControlConfig = sluice_node::config::from_toml(&ok).expect("credential");
        assert_eq!(config.credentials[0].role, Role::Operator);
        let bad = "[[credentials]]\nname = \"ops\"\nrole = \"admin\"\ntoken_hash = \"plain\"\n";
        let err = sluice_node::config::from_toml::<ControlConfig>(bad).unwrap_err();
        assert_eq!(err.key, "credentials[0].token_hash");
        let argon = sluice_node::secret::hash_password("t");
        let slow =
            format!("[[credentials]]\nname = \"a\"\nrole = \"admin\"\ntoken_hash = \"{argon}\"\n");
        assert!(sluice_node::config::from_toml::<ControlConfig>(&slow).is_err());
    }

    #[test]
    fn the_reference_in_docs_matches_the_code() {
        let doc = include_str!("../../../docs/control.md");
        sluice_node::reference::check::<ControlConfig>(doc).unwrap_or_else(|e| panic!("{e}"));
    }
}
