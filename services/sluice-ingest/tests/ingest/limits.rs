//! Every front door caps the connections one client address keeps open
//! (`limits.max_connections_per_ip`, 2 here): the third connection from the
//! same address is closed at once (SMTP says `421 4.7.0` first), and a
//! place freed is taken again.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::common::{self, Options};

/// What the server says, or that it closed (empty), within 10 s.
async fn first_words(conn: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("the server answered or closed within 10 s")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..read]).into_owned()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_address_keeps_at_most_its_share_of_connections() {
    let node = common::start(Options {
        max_connections_per_ip: 2,
        ..Options::default()
    })
    .await;

    // SMTP: two sessions greeted, the third told why and closed.
    let mut held = vec![connect(node.smtp).await, connect(node.smtp).await];
    for conn in &mut held {
        assert!(first_words(conn).await.starts_with("220 "));
    }
    let mut third = connect(node.smtp).await;
    let said = first_words(&mut third).await;
    assert!(
        said.starts_with("421 4.7.0 too many connections from your address"),
        "{said:?}"
    );
    assert_eq!(first_words(&mut third).await, "", "then closed");
    held.pop();
    // The freed place is taken again (the server notices the close first).
    let mut greeted = false;
    for _ in 0..50 {
        let mut again = connect(node.smtp).await;
        if first_words(&mut again).await.starts_with("220 ") {
            greeted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(greeted, "a freed place lets a new session in");
    drop(held);

    // gRPC and HTTP: the third connection is closed without an answer.
    for (door, addr) in [("gRPC", node.grpc), ("HTTP", node.http)] {
        let _held = [connect(addr).await, connect(addr).await];
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut third = connect(addr).await;
        assert_eq!(first_words(&mut third).await, "", "{door}: closed at once");
    }
    node.stop().await;
}
