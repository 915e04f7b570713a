//! The TLS server configuration of SMTP submission: the configured
//! certificate, or a self-signed one generated at start (rcgen).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::IngestError;
use crate::config::SmtpConfig;

/// Builds the acceptor; errors name the file or setting at fault.
pub fn acceptor(config: &SmtpConfig) -> Result<TlsAcceptor, IngestError> {
    let (chain, key) = match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| {
                    IngestError::Config(format!("smtp.cert_file {}: {err}", cert.display()))
                })?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|err| {
                IngestError::Config(format!("smtp.key_file {}: {err}", key.display()))
            })?;
            (chain, key)
        }
        (None, None) => self_signed(&config.hostname)?,
        _ => {
            return Err(IngestError::Config(
                "smtp.cert_file and smtp.key_file must be set together".into(),
            ));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| IngestError::Config(format!("TLS versions: {err}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| IngestError::Config(format!("smtp certificate: {err}")))?;
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
