//! TLS of a node's listeners and of its calls to other Sluice services
//! (rustls, ring provider): the one `[tls]` section every role shares.
//!
//! A listener serves TLS when `tls.cert_file` and `tls.key_file` are set;
//! the certificate is read again when either file changes (see
//! [`ReloadingCert`]). With `tls.client_ca_file` it asks every client for a
//! certificate signed by one of those CAs (mutual TLS). Without a
//! certificate a listener is plaintext, which [`check_exposure`] allows
//! only on loopback addresses unless `tls.allow_plaintext` says otherwise.
//! Calls to `https://` addresses verify the server against `tls.ca_file`
//! (or the webpki roots) and present the node's certificate as the client
//! certificate ([`endpoint`]).

mod client;
mod reload;
mod starttls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;

pub use client::endpoint;
pub use reload::ReloadingCert;
pub use starttls::smtp_acceptor;

/// TLS for this node's listeners and for its calls to other Sluice services.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first) the node's gRPC and HTTP listeners
    /// present, and its client certificate when a service it calls asks for
    /// one. Read again when the file changes. Unset: plaintext listeners,
    /// which may bind loopback addresses only (see `tls.allow_plaintext`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `tls.cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates; when set, every client of the node's gRPC and
    /// HTTP listeners must present a certificate one of them signed
    /// (mutual TLS). Unset: no client certificate is asked for.
    pub client_ca_file: Option<PathBuf>,
    /// PEM CA certificates trusted when this node calls another Sluice
    /// service at an `https://` address. Unset: the webpki (Mozilla) roots.
    pub ca_file: Option<PathBuf>,
    /// Let plaintext listeners bind non-loopback addresses, for networks
    /// where something else (a service mesh, an IPsec tunnel) encrypts
    /// traffic. Default false: such a listener is refused at start.
    pub allow_plaintext: bool,
}

/// A TLS setting that could not be used; the message names the setting and
/// the file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The server side of a node's TLS: its certificate (reloaded on change)
/// and, for mutual TLS, the verifier of client certificates.
#[derive(Clone)]
pub struct ServerTls {
    certificate: Arc<ReloadingCert>,
    clients: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("certificate", &self.certificate)
            .field("mutual", &self.clients.is_some())
            .finish()
    }
}

impl ServerTls {
    /// The server TLS `config` asks for, or `None` when it sets no
    /// certificate. Errors name the setting at fault.
    pub fn from_config(config: &TlsConfig) -> Result<Option<Self>, TlsError> {
        let (cert, key) = match (&config.cert_file, &config.key_file) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) if config.client_ca_file.is_some() => {
                return Err(TlsError(
                    "tls.client_ca_file needs tls.cert_file and tls.key_file: \
                     mutual TLS is TLS first"
                        .into(),
                ));
            }
            (None, None) => return Ok(None),
            _ => {
                return Err(TlsError(
                    "tls.cert_file and tls.key_file must be set together".into(),
                ));
            }
        };
        let certificate = Arc::new(ReloadingCert::load(cert, key, "tls")?);
        let clients = match &config.client_ca_file {
            Some(file) => {
                let roots = roots(file, "tls.client_ca_file")?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|err| TlsError(format!("tls.client_ca_file: {err}")))?;
                Some(verifier)
            }
            None => None,
        };
        Ok(Some(Self {
            certificate,
            clients,
        }))
    }

    /// An acceptor offering `alpn` (`[b"h2"]` for gRPC, `[b"http/1.1"]`
    /// for HTTP).
    pub fn acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions");
        let builder = match &self.clients {
            Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.certificate.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsAcceptor::from(Arc::new(config))
    }
}

/// Refuses a listener that would serve without credentials on a
/// non-loopback address (`allow_unauthenticated` set, no credentials).
pub fn check_credentials(setting: &str, addr: SocketAddr, open: bool) -> Result<(), TlsError> {
    if !open || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(TlsError(format!(
        "{setting} ({addr}) is not a loopback address and would serve every call without \
         credentials: add credentials (sluice hash-secret) or bind 127.0.0.1"
    )))
}

/// Refuses a plaintext listener (`tls` false) on a non-loopback address
/// unless `config.allow_plaintext`; `setting` names the listener's key.
pub fn check_exposure(
    setting: &str,
    addr: SocketAddr,
    tls: bool,
    config: &TlsConfig,
) -> Result<(), TlsError> {
    if tls || addr.ip().is_loopback() || config.allow_plaintext {
        return Ok(());
    }
    Err(TlsError(format!(
        "{setting} ({addr}) is not a loopback address and would serve without TLS: \
         set tls.cert_file and tls.key_file (PEM files), bind 127.0.0.1, or set \
         tls.allow_plaintext = true if something else encrypts this network"
    )))
}

/// The crypto provider every TLS configuration of the project uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file; `setting` names it in errors.
pub fn read_chain(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| TlsError(format!("{setting} {}: {err}", path.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{setting} {}: holds no PEM certificate",
            path.display()
        )));
    }
    Ok(chain)
}

/// The private key of a PEM file; `setting` names it in errors.
pub fn read_key(path: &Path, setting: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|err| TlsError(format!("{setting} {}: {err}", path.display())))
}

/// The CA certificates of a PEM file as trust anchors.
pub fn roots(path: &Path, setting: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_chain(path, setting)? {
        roots
            .add(cert)
            .map_err(|err| TlsError(format!("{setting} {}: {err}", path.display())))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn plaintext_is_refused_off_loopback_unless_allowed() {
        let plain = TlsConfig::default();
        check_exposure("listen", addr("127.0.0.1:7070"), false, &plain).expect("v4 loopback");
        check_exposure("listen", addr("[::1]:7070"), false, &plain).expect("v6 loopback");
        check_exposure("listen", addr("0.0.0.0:7070"), true, &plain).expect("with TLS");
        let err = check_exposure("listen", addr("0.0.0.0:7070"), false, &plain).unwrap_err();
        assert!(err.0.starts_with("listen (0.0.0.0:7070)"), "{err}");
        assert!(err.0.contains("tls.cert_file"), "{err}");
        let allowed = TlsConfig {
            allow_plaintext: true,
            ..TlsConfig::default()
        };
        check_exposure("listen", addr("10.1.2.3:7070"), false, &allowed).expect("allowed");
    }

    #[test]
    fn incomplete_settings_are_named() {
        assert!(
            ServerTls::from_config(&TlsConfig::default())
                .expect("ok")
                .is_none()
        );
        let half = TlsConfig {
            cert_file: Some("/nonexistent/cert.pem".into()),
            ..TlsConfig::default()
        };
        let err = ServerTls::from_config(&half).unwrap_err();
        assert!(err.0.contains("must be set together"), "{err}");
        let mutual_only = TlsConfig {
            client_ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let err = ServerTls::from_config(&mutual_only).unwrap_err();
        assert!(err.0.contains("tls.client_ca_file needs"), "{err}");
        let missing = TlsConfig {
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..TlsConfig::default()
        };
        let err = ServerTls::from_config(&missing).unwrap_err();
        assert!(
            err.0.starts_with("tls.cert_file /nonexistent/cert.pem"),
            "{err}"
        );
    }
}
