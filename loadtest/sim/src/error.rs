//! The simulator's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can stop the simulator from starting or reporting.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    ReadScenario {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The scenario is not valid TOML or has unknown or mistyped fields.
    #[error("invalid scenario: {0}")]
    Parse(#[from] Box<toml::de::Error>),
    /// The scenario parsed but makes no sense (duplicate names, bad rates...).
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the scenario.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The self-signed certificate or the TLS configuration failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// Writing the report failed.
    #[error("cannot write report {path}: {source}")]
    WriteReport {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}
