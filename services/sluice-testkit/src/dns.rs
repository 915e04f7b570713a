//! A small name server on loopback (UDP) for tests that resolve over real
//! DNS: the test decides each answer, and how long to wait before sending it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType};
use tokio::net::UdpSocket;

/// Serves `answer` on a fresh loopback port until the test ends; each
/// query is answered after the delay `answer` returns with it.
pub async fn serve(
    answer: impl Fn(&Message) -> (Message, Duration) + Send + Sync + 'static,
) -> SocketAddr {
    let socket = Arc::new(
        UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind name server"),
    );
    let addr = socket.local_addr().expect("addr");
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let (socket, answer) = (socket.clone(), answer.clone());
            tokio::spawn(async move {
                let (reply, delay) = answer(&query);
                tokio::time::sleep(delay).await;
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            });
        }
    });
    addr
}

/// An empty answer to `query` (its id and question, recursion available,
/// authoritative) for the test to add records to.
pub fn reply_to(query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(query.queries[0].clone());
    reply
}
