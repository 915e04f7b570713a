//! The HTTP server every HTTP listener uses, against real sockets: a
//! client that trickles its request head is disconnected after
//! `HEADER_TIMEOUT`, while other clients are served.

use std::time::{Duration, Instant};

use sluice_node::gate::Gate;
use sluice_node::listen::{self, Door, HEADER_TIMEOUT};
use sluice_node::tls::TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_cut_off_and_others_are_served() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = TlsConfig::default();
    let door = Door {
        setting: "listen.http",
        gate: Gate::new(16, 16),
        tls: None,
        alpn: listen::HTTP1,
        config: &config,
    };
    let incoming = listen::open(listener, door).expect("open");
    let addr = incoming.local_addr();
    let stop = sluice_node::CancellationToken::new();
    let app = sluice_node::probes::routes(stop.clone(), sluice_node::probes::always_ready());
    let server = tokio::spawn(listen::serve_http(
        incoming,
        app,
        sluice_node::shed::Shed::new(64, sluice_node::shed::Protocol::Http),
        stop.clone(),
    ));

    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("send");
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        // One header byte a second: never a complete head.
        loop {
            if slow.write_all(b"X").await.is_err() {
                return;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    });
    let answer = get(addr, "/readyz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::timeout(HEADER_TIMEOUT + Duration::from_secs(5), trickle)
        .await
        .expect("the trickling client was not cut off")
        .expect("task");
    let held = started.elapsed();
    assert!(
        held >= HEADER_TIMEOUT - Duration::from_secs(1),
        "cut off after {held:?}"
    );
    stop.cancel();
    server.await.expect("task").expect("served");
}
