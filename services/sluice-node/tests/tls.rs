//! TLS on a listener, against real sockets: certificates from a CA made at
//! test time, a rustls client, and a tonic client and server.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rustls::pki_types::{CertificateDer, ServerName};
use sluice_node::gate::Gate;
use sluice_node::listen::{self, Door, Incoming};
use sluice_node::tls::{ServerTls, TlsConfig, read_chain, read_key, roots};
use sluice_testkit::pki::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn tls_config(dir: &Path, pki: &Pki, mutual: bool) -> TlsConfig {
    let (cert, key) = pki.issue("server").write(dir, "server");
    TlsConfig {
        cert_file: Some(cert),
        key_file: Some(key),
        client_ca_file: mutual.then(|| pki.write_ca(dir)),
        ca_file: Some(pki.write_ca(dir)),
        allow_plaintext: false,
    }
}

async fn open(config: &TlsConfig, alpn: &[&[u8]]) -> Incoming {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = ServerTls::from_config(config)
        .expect("tls")
        .expect("configured");
    let door = Door {
        setting: "listen",
        gate: Gate::new(16, 16),
        tls: Some(&server),
        alpn,
        config,
    };
    listen::open(listener, door).expect("open")
}

/// Greets every connection with `hello` and closes it.
fn greet(mut incoming: Incoming) {
    tokio::spawn(async move {
        while let Some(Ok(mut conn)) = incoming.next().await {
            tokio::spawn(async move {
                let _ = conn.write_all(b"hello").await;
                let _ = conn.shutdown().await;
            });
        }
    });
}

/// Connects with a rustls client trusting `ca`, presenting `client` (a
/// certificate and key file pair) if given; returns the server's leaf
/// certificate and what the server said.
async fn visit(
    addr: std::net::SocketAddr,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> (CertificateDer<'static>, std::io::Result<Vec<u8>>) {
    let roots = Arc::new(roots(ca, "ca").expect("roots"));
    let builder = rustls::ClientConfig::builder_with_provider(sluice_node::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_chain(cert, "c").unwrap(), read_key(key, "k").unwrap())
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .clone();
    let mut said = Vec::new();
    let read = tls.read_to_end(&mut said).await.map(|_| said);
    (leaf.into_owned(), read)
}

/// A listener greeting every client, with a fresh CA's certificate (and
/// mutual TLS if asked); the temp dir, the CA, the config and the address.
async fn greeting(mutual: bool) -> (tempfile::TempDir, Pki, TlsConfig, std::net::SocketAddr) {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new("test CA");
    let config = tls_config(dir.path(), &pki, mutual);
    let incoming = open(&config, &[]).await;
    let addr = incoming.local_addr();
    greet(incoming);
    (dir, pki, config, addr)
}

fn leaf_of(path: &Path) -> CertificateDer<'static> {
    read_chain(path, "cert").expect("chain").remove(0)
}

#[tokio::test]
async fn a_tls_listener_reloads_its_certificate_when_the_files_change() {
    let (dir, pki, config, addr) = greeting(false).await;
    let ca = config.ca_file.clone().expect("ca");
    let cert_file = config.cert_file.clone().expect("cert");

    let (leaf, said) = visit(addr, &ca, None).await;
    assert_eq!(leaf, leaf_of(&cert_file), "the first certificate");
    assert_eq!(said.expect("read"), b"hello");

    // A certificate manager replaces both files.
    let first = leaf;
    pki.issue("server, renewed").write(dir.path(), "server");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (leaf, _) = visit(addr, &ca, None).await;
    assert_ne!(leaf, first, "still the old certificate after a change");
    assert_eq!(leaf, leaf_of(&cert_file), "the renewed certificate");

    // A half-written file does not take the listener down.
    let renewed = leaf;
    std::fs::write(&cert_file, "-----BEGIN CERTIFICATE-----\ntruncated").expect("write");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (leaf, said) = visit(addr, &ca, None).await;
    assert_eq!(leaf, renewed, "kept the last certificate that loaded");
    assert_eq!(said.expect("read"), b"hello");
}

#[tokio::test]
async fn mutual_tls_serves_only_clients_with_a_certificate_of_the_ca() {
    let (dir, pki, config, addr) = greeting(true).await;
    let ca = config.ca_file.clone().expect("ca");

    let (cert, key) = pki.issue("sender-1").write(dir.path(), "client");
    let (_, said) = visit(addr, &ca, Some((&cert, &key))).await;
    assert_eq!(
        said.expect("read"),
        b"hello",
        "a client of the CA is served"
    );

    let (_, said) = visit(addr, &ca, None).await;
    assert!(said.is_err(), "no client certificate: {said:?}");

    let stranger = Pki::new("another CA").issue("intruder");
    let (cert, key) = stranger.write(dir.path(), "stranger");
    let (_, said) = visit(addr, &ca, Some((&cert, &key))).await;
    assert!(said.is_err(), "a certificate of another CA: {said:?}");
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_other_handshakes() {
    let (_dir, _pki, config, addr) = greeting(false).await;
    let _silent = TcpStream::connect(addr).await.expect("connect");
    let ca = config.ca_file.clone().expect("ca");
    let visited = tokio::time::timeout(Duration::from_secs(5), visit(addr, &ca, None)).await;
    let (_, said) = visited.expect("served while another handshake waits");
    assert_eq!(said.expect("read"), b"hello");
}

#[tokio::test]
async fn a_plaintext_listener_off_loopback_is_refused_at_open() {
    let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let config = TlsConfig::default();
    let door = Door {
        setting: "listen.grpc",
        gate: Gate::new(16, 16),
        tls: None,
        alpn: &[],
        config: &config,
    };
    let err = listen::open(listener, door).err().expect("refused");
    assert!(err.0.starts_with("listen.grpc (0.0.0.0:"), "{err}");
    assert!(
        err.0.contains("set tls.cert_file and tls.key_file"),
        "{err}"
    );
}

#[tokio::test]
async fn grpc_over_mutual_tls_through_the_shared_client_endpoint() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new("cluster CA");
    let config = tls_config(dir.path(), &pki, true);
    let incoming = open(&config, &[b"h2"]).await;
    let addr = incoming.local_addr();
    let shutdown = sluice_node::CancellationToken::new();
    let health = sluice_node::health::service(&["test.v1.Thing"], shutdown.clone()).await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()),
    );
    let url = format!("https://127.0.0.1:{}", addr.port());

    let endpoint = sluice_node::tls::endpoint(&url, &config).expect("endpoint");
    let mut client = HealthClient::new(endpoint.connect().await.expect("connect over TLS"));
    let request = HealthCheckRequest {
        service: "test.v1.Thing".into(),
    };
    let answer = client.check(request.clone()).await.expect("check");
    assert_eq!(answer.into_inner().status, 1, "SERVING");

    let no_client_cert = TlsConfig {
        cert_file: None,
        key_file: None,
        ..config.clone()
    };
    let endpoint = sluice_node::tls::endpoint(&url, &no_client_cert).expect("endpoint");
    let refused = match endpoint.connect().await {
        Err(_) => true,
        Ok(channel) => HealthClient::new(channel)
            .check(request.clone())
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");

    let plain = format!("http://127.0.0.1:{}", addr.port());
    let endpoint = sluice_node::tls::endpoint(&plain, &config).expect("endpoint");
    let refused = match endpoint.connect().await {
        Err(_) => true,
        Ok(channel) => HealthClient::new(channel).check(request).await.is_err(),
    };
    assert!(refused, "plaintext was served by a TLS listener");
    shutdown.cancel();
}
