//! One HTTP/1.1 request over a fresh TCP connection, written by hand so a
//! test sees exactly what went over the wire and what came back.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `method path` to `addr` (`host:port`) with `headers` (each
/// `name: value`) and `body`; the whole answer, head and body.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of an answer [`request`] returned.
pub fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"))
}

/// The body of an answer [`request`] returned (the answer must not be
/// chunked: axum sends JSON with a length).
pub fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}
