//! STARTTLS: a self-signed certificate made at start, served with rustls.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::SimError;

/// A TLS acceptor for a fresh self-signed certificate naming `hosts`, and
/// the certificate (DER). A client verifies it only by trusting exactly
/// this certificate ([`crate::SimHandle::tls_certificate_der`]).
pub fn self_signed_acceptor(
    hosts: Vec<String>,
) -> Result<(TlsAcceptor, CertificateDer<'static>), SimError> {
    let certified =
        rcgen::generate_simple_self_signed(hosts).map_err(|e| SimError::Tls(e.to_string()))?;
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SimError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .map_err(|e| SimError::Tls(e.to_string()))?;
    Ok((TlsAcceptor::from(Arc::new(config)), cert))
}
