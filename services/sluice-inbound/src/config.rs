//! Configuration of an inbound node (`sluice inbound --config inbound.toml`;
//! every key overridable by `SLUICE_INBOUND_<KEY>`). docs/feedback.md holds
//! the reference, checked against these doc comments by a test.

use serde::{Deserialize, Serialize};
use sluice_node::{ConfigError, RoleConfig, Span};

/// An inbound node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct InboundConfig {
    /// Address the SMTP MX listens on (the tenants' bounce domains' MX
    /// records point here; port 25 in production).
    pub listen: String,
    /// Name in the greeting and the EHLO reply, and of the generated
    /// certificate.
    pub hostname: String,
    /// PEM certificate chain offered with STARTTLS (read again when the
    /// files change); unset with `key_file`: a self-signed certificate
    /// generated at start (senders of bounces encrypt without checking it).
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<std::path::PathBuf>,
    /// Kafka bootstrap servers, comma separated.
    pub brokers: String,
    /// Topic the findings are published to as events (the recorder's).
    pub events_topic: String,
    /// The secret VERP addresses are signed with: ingest's
    /// `unsubscribe.secret` (at least 32 characters).
    pub secret: String,
    /// Addresses feedback loops send complaints (ARF reports) to, besides
    /// the VERP addresses (which take them too); compared without case.
    pub feedback_addresses: Vec<String>,
    /// Largest message taken, in bytes; larger ones are refused with 552.
    pub max_message_bytes: usize,
    /// Recipients in one transaction at most; more are refused with 452.
    pub max_recipients: usize,
    /// Connections the listener keeps open at once; more are refused with
    /// 421 on arrival.
    pub max_connections: usize,
    /// Connections one client address may keep open.
    pub max_connections_per_ip: usize,
    /// Longest wait for a command before the session is closed.
    pub idle_timeout: Span,
    /// Longest a message's DATA may take.
    pub data_timeout: Span,
    /// How long open sessions may take to finish after shutdown.
    pub drain_timeout: Span,
    /// Where `GET /metrics` is served (docs/metrics.md); without a token,
    /// only on a loopback address (the role has no TLS of its own yet).
    pub metrics: sluice_node::metrics::MetricsSection,
    /// The HTTP listener of the one-click unsubscribe, open and click
    /// endpoints.
    pub http: HttpSection,
}

/// The link endpoints' HTTP listener (docs/feedback.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Address it listens on; empty (the default): not served. A
    /// non-loopback address needs `http.tls` (or `http.tls.allow_plaintext`
    /// behind a proxy that terminates TLS).
    pub listen: String,
    /// ingest's `unsubscribe.base_url`: its path is where the one-click
    /// unsubscribe links are answered.
    pub unsubscribe_base_url: String,
    /// ingest's `tracking.base_url`; empty: the open and click paths are
    /// not served.
    pub tracking_base_url: String,
    /// Requests in progress at once; more are answered 503 at once.
    pub max_requests: usize,
    /// Connections the listener keeps open at once.
    pub max_connections: usize,
    /// Connections one client address may keep open.
    pub max_connections_per_ip: usize,
    /// Longest a request body may take to arrive.
    pub body_timeout: Span,
    /// The listener's certificate.
    pub tls: sluice_node::tls::TlsConfig,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: String::new(),
            unsubscribe_base_url: String::new(),
            tracking_base_url: String::new(),
            max_requests: 1024,
            max_connections: 4096,
            max_connections_per_ip: 64,
            body_timeout: Span::secs(10),
            tls: Default::default(),
        }
    }
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2525".into(),
            hostname: "localhost".into(),
            cert_file: None,
            key_file: None,
            brokers: "127.0.0.1:9092".into(),
            events_topic: "sluice.events".into(),
            secret: String::new(),
            feedback_addresses: Vec::new(),
            max_message_bytes: 10 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 1024,
            max_connections_per_ip: 32,
            idle_timeout: Span::secs(300),
            data_timeout: Span::secs(600),
            drain_timeout: sluice_node::DEFAULT_DRAIN,
            metrics: Default::default(),
            http: Default::default(),
        }
    }
}

impl InboundConfig {
    /// The defaults, overridden by `file` when given, then by
    /// `SLUICE_INBOUND_*` variables; refused with the key when invalid.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        sluice_node::config::load(file)
    }
}

impl RoleConfig for InboundConfig {
    const ROLE: &'static str = "inbound";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.secret.len() < 32 {
            return Err(ConfigError::invalid(
                Self::ROLE,
                "secret",
                "must be ingest's unsubscribe.secret (at least 32 characters): \
                 VERP addresses are signed with it",
            ));
        }
        if self.max_message_bytes == 0 || self.max_recipients == 0 {
            return Err(ConfigError::invalid(
                Self::ROLE,
                "max_message_bytes",
                "max_message_bytes and max_recipients must be above 0",
            ));
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err(ConfigError::invalid(
                Self::ROLE,
                "max_connections",
                "max_connections and max_connections_per_ip must be above 0",
            ));
        }
        self.http.check()
    }
}

impl HttpSection {
    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| Err(ConfigError::invalid("inbound", key, reason));
        if self.listen.is_empty() {
            return Ok(());
        }
        let web = |url: &str| url.starts_with("https://") || url.starts_with("http://");
        if !web(&self.unsubscribe_base_url) {
            return bad(
                "http.unsubscribe_base_url",
                "must be ingest's unsubscribe.base_url (an http:// or https:// URL) when http.listen is set",
            );
        }
        if !(self.tracking_base_url.is_empty() || web(&self.tracking_base_url)) {
            return bad(
                "http.tracking_base_url",
                "must be an http:// or https:// URL, or empty to serve no tracking links",
            );
        }
        if self.max_requests == 0 || self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return bad(
                "http.max_requests",
                "http.max_requests, http.max_connections and http.max_connections_per_ip must be above 0",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_in_docs_matches_the_code() {
        let doc = include_str!("../../../docs/feedback.md");
        sluice_node::reference::check::<InboundConfig>(doc).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_short_secret_and_unknown_keys_are_refused() {
        let err =
            sluice_node::config::from_toml::<InboundConfig>("secret = \"short\"").unwrap_err();
        assert_eq!(err.key, "secret");
        let ok = "secret = \"0123456789abcdef0123456789abcdef\"";
        assert!(sluice_node::config::from_toml::<InboundConfig>(ok).is_ok());
        let unknown = format!("{ok}\nlisen = \"x\"");
        let err = sluice_node::config::from_toml::<InboundConfig>(&unknown).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn the_example_loads_and_link_endpoints_need_their_base_url() {
        let example = include_str!("../../../deploy/examples/inbound.toml");
        let config = sluice_node::config::from_toml::<InboundConfig>(example)
            .expect("deploy/examples/inbound.toml loads");
        assert_eq!(config.http.tracking_base_url, "https://links.example.com/t");
        let ok = "secret = \"0123456789abcdef0123456789abcdef\"";
        let bare = format!("{ok}\n[http]\nlisten = \"127.0.0.1:0\"");
        let err = sluice_node::config::from_toml::<InboundConfig>(&bare).unwrap_err();
        assert_eq!(err.key, "http.unsubscribe_base_url");
        let bad = format!(
            "{bare}\nunsubscribe_base_url = \"https://u.example/u\"\ntracking_base_url = \"t\""
        );
        let err = sluice_node::config::from_toml::<InboundConfig>(&bad).unwrap_err();
        assert_eq!(err.key, "http.tracking_base_url");
    }
}
