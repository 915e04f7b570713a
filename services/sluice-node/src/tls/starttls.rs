//! The TLS an SMTP listener offers with STARTTLS (submission and the
//! inbound MX): the configured certificate, read again when its files
//! change, or a self-signed one generated at start (rcgen) when none is
//! configured.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use super::{ReloadingCert, TlsError, provider};

/// The acceptor for `cert_file` and `key_file` (both or neither; `setting`
/// prefixes their names in errors, e.g. `smtp`), or for a certificate made
/// for `hostname` when neither is set.
pub fn smtp_acceptor(
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    hostname: &str,
    setting: &str,
) -> Result<TlsAcceptor, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError(format!("TLS versions: {err}")))?
        .with_no_client_auth();
    let server = match (cert_file, key_file) {
        (Some(cert), Some(key)) => {
            let reloading = ReloadingCert::load(cert, key, setting)?;
            builder.with_cert_resolver(Arc::new(reloading))
        }
        (None, None) => {
            let (chain, key) = self_signed(hostname)?;
            builder
                .with_single_cert(chain, key)
                .map_err(|err| TlsError(format!("{setting} certificate: {err}")))?
        }
        _ => {
            return Err(TlsError(format!(
                "{setting}.cert_file and {setting}.key_file must be set together"
            )));
        }
    };
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn self_signed(
    hostname: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certified = rcgen::generate_simple_self_signed(vec![hostname.to_owned()])
        .map_err(|err| TlsError(format!("generating a certificate: {err}")))?;
    tracing::warn!(
        hostname,
        "STARTTLS uses a generated self-signed certificate (set cert_file and key_file to offer your own)"
    );
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    Ok((
        vec![certified.cert.der().clone()],
        PrivateKeyDer::Pkcs8(key),
    ))
}
