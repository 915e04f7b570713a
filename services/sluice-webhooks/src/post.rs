//! One post to a webhook: HTTP/1.1 `POST` over a kept-alive connection
//! (`connect.rs` opens them: address check, TLS), and the answer's status.
//! Redirects are not followed; up to 64 KiB of the answer's body is read
//! and dropped, so the connection can be reused. Everything within one
//! timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, header};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::connect::Connector;

/// `User-Agent` of every post.
pub const USER_AGENT: &str = concat!("Sluice-Webhooks/", env!("CARGO_PKG_VERSION"));

/// A post that failed: the answer's status (0 when none came) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub reason: String,
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Self { status: 0, reason }
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
}

/// Makes posts, over kept-alive connections (per scheme, host and port).
#[derive(Clone)]
pub struct Poster {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

impl Poster {
    /// Posts within `timeout`, keeping up to `idle_per_host` idle
    /// connections per receiver; `allow_private` lets URLs reach loopback
    /// and private addresses.
    pub fn new(timeout: Duration, allow_private: bool, idle_per_host: usize) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(idle_per_host)
            .build(Connector::new(allow_private));
        Self { client, timeout }
    }

    /// Posts `body` with `headers` to `url`: `Ok` on a 2xx answer, else
    /// what went wrong, in words. Redirects are not followed; the answer's
    /// body is read and dropped (so the connection can be reused).
    pub async fn post(
        &self,
        url: &url::Url,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<u16, Failure> {
        match tokio::time::timeout(self.timeout, self.post_now(url, headers, body)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {:?}", self.timeout).into()),
        }
    }

    async fn post_now(
        &self,
        url: &url::Url,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<u16, Failure> {
        let mut builder = Request::post(url.as_str())
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| format!("building the request: {e}"))?;
        let response = self.client.request(request).await.map_err(|e| {
            // The connector's own words (address refused, TLS) come first.
            let source = std::error::Error::source(&e).map(ToString::to_string);
            format!("post failed: {}", source.unwrap_or_else(|| e.to_string()))
        })?;
        let status = response.status();
        // Drain a small answer so the connection goes back to the pool.
        let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await;
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(Failure {
                status: status.as_u16(),
                reason: format!("answered {status} (a 2xx is success; redirects are not followed)"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-shot HTTP server answering `reply`; yields the request it read.
    async fn server(reply: &'static str) -> (url::Url, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook?x=1", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 8192];
            let mut read = 0;
            while !String::from_utf8_lossy(&buf[..read]).contains("{\"a\":1}") {
                read += s.read(&mut buf[read..]).await.unwrap();
            }
            s.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..read]).into_owned()
        });
        (url.parse().unwrap(), task)
    }

    #[tokio::test]
    async fn a_post_carries_its_headers_and_a_2xx_is_success() {
        let (url, seen) = server("HTTP/1.1 204 No Content\r\n\r\n").await;
        let poster = Poster::new(Duration::from_secs(5), true, 4);
        let headers = [("sluice-signature", "t=1,v1=00".to_owned())];
        let status = poster
            .post(&url, &headers, Bytes::from_static(b"{\"a\":1}"))
            .await;
        assert_eq!(status, Ok(204));
        let request = seen.await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("post /hook?x=1 http/1.1"), "{request}");
        assert!(request.contains("sluice-signature: t=1,v1=00"), "{request}");
        assert!(
            request.contains("content-type: application/json"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn redirects_and_errors_fail_and_private_addresses_are_refused() {
        let (url, _seen) = server("HTTP/1.1 302 Found\r\nLocation: http://x/\r\n\r\n").await;
        let poster = Poster::new(Duration::from_secs(5), true, 4);
        let err = poster
            .post(&url, &[], Bytes::from_static(b"{\"a\":1}"))
            .await;
        assert_eq!(err.as_ref().map_err(|f| f.status), Err(302));
        assert!(err.unwrap_err().reason.contains("302"));
        let strict = Poster::new(Duration::from_secs(5), false, 4);
        let err = strict
            .post(&url, &[], Bytes::from_static(b"{\"a\":1}"))
            .await;
        assert!(err.unwrap_err().reason.contains("no public address"));
    }
}
