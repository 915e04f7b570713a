//! The TLS server configuration of SMTP submission: the configured
//! certificate (reloaded when its files change), or a self-signed one
//! generated at start (`sluice_node::tls::smtp_acceptor`).

use tokio_rustls::TlsAcceptor;

use crate::IngestError;
use crate::config::SmtpConfig;

/// Builds the acceptor; errors name the file or setting at fault. A
/// configured certificate is read again when its files change.
pub fn acceptor(config: &SmtpConfig) -> Result<TlsAcceptor, IngestError> {
    let (cert, key) = (config.cert_file.as_deref(), config.key_file.as_deref());
    sluice_node::tls::smtp_acceptor(cert, key, &config.hostname, "smtp")
        .map_err(|err| IngestError::Config(err.0))
}
