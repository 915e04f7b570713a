//! The TLS server configuration of SMTP submission: the configured
//! certificate (reloaded when its files change), or a self-signed one
//! generated at start (rcgen).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sluice_node::tls::ReloadingCert;
use tokio_rustls::TlsAcceptor;

use crate::IngestError;
use crate::config::SmtpConfig;

/// Builds the acceptor; errors name the file or setting at fault. A
/// configured certificate is read again when its files change.
pub fn acceptor(config: &SmtpConfig) -> Result<TlsAcceptor, IngestError> {
    let builder = ServerConfig::builder_with_provider(sluice_node::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| IngestError::Config(format!("TLS versions: {err}")))?
        .with_no_client_auth();
    let server = match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            let reloading =
                ReloadingCert::load(cert, key, "smtp").map_err(|err| IngestError::Config(err.0))?;
            builder.with_cert_resolver(Arc::new(reloading))
        }
        (None, None) => {
            let (chain, key) = self_signed(&config.hostname)?;
            builder
                .with_single_cert(chain, key)
                .map_err(|err| IngestError::Config(format!("smtp certificate: {err}")))?
        }
        _ => {
            return Err(IngestError::Config(
                "smtp.cert_file and smtp.key_file must be set together".into(),
            ));
        }
    };
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn self_signed(
    hostname: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), IngestError> {
    let certified = rcgen::generate_simple_self_signed(vec![hostname.to_owned()])
        .map_err(|err| IngestError::Config(format!("generating a certificate: {err}")))?;
    tracing::warn!(hostname, "SMTP uses a generated self-signed certificate");
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    Ok((
        vec![certified.cert.der().clone()],
        PrivateKeyDer::Pkcs8(key),
    ))
}
