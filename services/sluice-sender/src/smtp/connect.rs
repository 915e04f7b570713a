use sluice_node::trace::TARGET;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tracing::Instrument;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Session, SmtpError, TxOutcome};

/// A connection, in clear or after STARTTLS.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

/// How to open a session.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Source address the connection is bound to.
    pub source_ip: IpAddr,
    /// Name announced in EHLO.
    pub ehlo_name: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Fail instead of sending in clear when STARTTLS is not offered or
    /// fails, and verify the certificate (a site that requires TLS, or an
    /// MX host under an enforced MTA-STS policy).
    pub require_tls: bool,
    /// Use STARTTLS when offered.
    pub opportunistic_tls: bool,
    /// The TLS clients: verifying for `require_tls`, else opportunistic.
    pub tls: Arc<TlsClients>,
}

/// The two TLS client configurations a sender uses.
pub struct TlsClients {
    /// Any certificate (opportunistic TLS, RFC 7435).
    any: TlsConnector,
    /// Verified against the public web PKI roots and the trusted extras.
    verified: TlsConnector,
}

impl std::fmt::Debug for TlsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClients")
    }
}

impl TlsClients {
    /// Clients trusting, for verified TLS, the public roots and `extra`.
    pub fn new(extra: &[CertificateDer<'static>]) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in extra {
            roots
                .add(cert.clone())
                .map_err(|e| format!("a trusted certificate is not usable: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("building the certificate verifier: {e}"))?;
        let verified = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_webpki_verifier(verifier)
            .with_no_client_auth();
        Ok(Self {
            any: connector(),
            verified: TlsConnector::from(Arc::new(verified)),
        })
    }

    /// A client for HTTPS (the MTA-STS policy fetch): the verified
    /// configuration's roots, offering HTTP/1.1 by ALPN.
    pub fn https(&self) -> TlsConnector {
        let mut config = (**self.verified.config()).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }

    /// Reads the PEM certificates of `file` (none when `None`) and builds
    /// the clients; errors name the file.
    pub fn from_trust_file(file: Option<&std::path::Path>) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        let extra: Vec<CertificateDer<'static>> = match file {
            None => Vec::new(),
            Some(path) => CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("smtp.tls_trust_file {}: {e}", path.display()))?,
        };
        if file.is_some() && extra.is_empty() {
            return Err("smtp.tls_trust_file holds no PEM certificate".into());
        }
        Self::new(&extra)
    }
}

/// Connects from `opts.source_ip` to `mx`, reads the banner, says EHLO and,
/// when offered, upgrades to TLS. Opportunistic TLS does not verify the
/// certificate (RFC 7435): it protects against passive observers only. A
/// site that requires TLS, or an MX host an MTA-STS policy names
/// (`opts.require_tls` set for it by the caller), gets its certificate
/// verified for `tls_name`.
pub async fn connect(
    mx: SocketAddr,
    tls_name: &str,
    opts: &ConnectOptions,
) -> Result<Result<Session<Transport>, TxOutcome>, SmtpError> {
    let dialing = tracing::info_span!(target: TARGET, "smtp.dial", mx = %mx);
    let tcp = tokio::time::timeout(opts.connect_timeout, dial(opts.source_ip, mx))
        .instrument(dialing)
        .await
        .map_err(|_| SmtpError::Timeout(opts.connect_timeout, "connect"))??;
    tcp.set_nodelay(true)?;
    let greeting = tracing::info_span!(target: TARGET, "smtp.greeting");
    let opening = Session::open(Transport::Plain(tcp), &opts.ehlo_name, opts.command_timeout);
    let session = match opening.instrument(greeting).await? {
        Ok(s) => s,
        Err(refused) => return Ok(Err(refused)),
    };
    if !session.caps.starttls || !(opts.opportunistic_tls || opts.require_tls) {
        if opts.require_tls {
            return Err(SmtpError::TlsRequired);
        }
        return Ok(Ok(session));
    }
    let tls = tracing::info_span!(target: TARGET, "smtp.starttls", verify = opts.require_tls);
    upgrade(session, tls_name, opts).instrument(tls).await
}

async fn dial(source: IpAddr, mx: SocketAddr) -> io::Result<TcpStream> {
    let socket = match mx {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // An unspecified source (`0.0.0.0`, `::`) lets the kernel pick the
    // address, for either family of MX address.
    if !source.is_unspecified() {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    socket.connect(mx).await
}

async fn upgrade(
    session: Session<Transport>,
    tls_name: &str,
    opts: &ConnectOptions,
) -> Result<Result<Session<Transport>, TxOutcome>, SmtpError> {
    let command_timeout = session.command_timeout;
    let stream = match session.starttls().await? {
        Ok(Transport::Plain(tcp)) => tcp,
        Ok(Transport::Tls(_)) => return Err(SmtpError::Tls("STARTTLS inside TLS".into())),
        Err(refused) => return Ok(Err(refused)),
    };
    let name = ServerName::try_from(tls_name.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("static name"));
    // A site that requires TLS gets a verified certificate, or no delivery.
    let connector = if opts.require_tls {
        &opts.tls.verified
    } else {
        &opts.tls.any
    };
    let tls = connector
        .connect(name, stream)
        .await
        .map_err(|e| SmtpError::Tls(e.to_string()))?;
    let mut session = Session::resume(Transport::Tls(Box::new(tls)), command_timeout);
    match session.ehlo(&opts.ehlo_name).await? {
        Ok(()) => Ok(Ok(session)),
        Err(refused) => Ok(Err(refused)),
    }
}

fn connector() -> TlsConnector {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
            .with_no_client_auth();
        Arc::new(config)
    });
    TlsConnector::from(config.clone())
}

/// Accepts any certificate: opportunistic TLS for SMTP between MTAs.
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
