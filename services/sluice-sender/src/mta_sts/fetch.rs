//! Fetching a domain's policy (RFC 8461 §3.3): `GET
//! https://mta-sts.<domain>/.well-known/mta-sts.txt` over HTTP/1.1, the
//! certificate verified for `mta-sts.<domain>` with the roots of verified
//! SMTP TLS (webpki roots plus `smtp.tls_trust_file`). Only a 200 counts:
//! redirects are not followed, nothing is cached by HTTP rules, the body is
//! read up to [`MAX_BODY`], and the whole fetch has [`FETCH_TIMEOUT`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::task::AbortOnDropHandle;

use super::policy::{MAX_BODY, Policy, parse_policy};

/// Longest a whole fetch (DNS, connect, TLS, request, body) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

const PATH: &str = "/.well-known/mta-sts.txt";

/// Fetches policies over HTTPS.
pub struct Fetcher {
    dns: TokioResolver,
    tls: TlsConnector,
    port: u16,
}

impl Fetcher {
    /// A fetcher resolving with `dns` (the router's resolver), verifying
    /// with `tls`, connecting to `port` (443 but for tests and proxies).
    pub fn new(dns: TokioResolver, tls: TlsConnector, port: u16) -> Self {
        Self { dns, tls, port }
    }

    /// The policy of `domain`, or why it could not be had (names the URL).
    pub async fn fetch(&self, domain: &str) -> Result<Policy, String> {
        let host = format!("mta-sts.{}", domain.trim_end_matches('.'));
        let url = format!("https://{host}:{}{PATH}", self.port);
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_from(&host)).await {
            Ok(Ok(policy)) => Ok(policy),
            Ok(Err(reason)) => Err(format!("{url}: {reason}")),
            Err(_) => Err(format!("{url}: no policy within {FETCH_TIMEOUT:?}")),
        }
    }

    async fn fetch_from(&self, host: &str) -> Result<Policy, String> {
        let ips = self
            .dns
            .lookup_ip(format!("{host}.").as_str())
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?;
        let addrs: Vec<SocketAddr> = ips
            .iter()
            .map(|ip| SocketAddr::new(ip, self.port))
            .collect();
        let tcp = connect_any(&addrs).await?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("`{host}` is not a TLS server name: {e}"))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS failed: {e}"))?;
        let body = get(tls, host, self.port).await?;
        parse_policy(&body).map_err(|e| e.to_string())
    }
}

/// A TCP connection to the first of `addrs` that answers.
async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = "no address".to_owned();
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
    }
    Err(last)
}

/// `GET` the policy path on `io`; the body of a 200 answer.
async fn get<IO>(io: IO, host: &str, port: u16) -> Result<Bytes, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    // Drives the connection; aborted when this function returns.
    let _driver = AbortOnDropHandle::new(tokio::spawn(conn));
    let authority = if port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    let request = Request::get(PATH)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, "sluice-sender")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let response = send
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    if status != StatusCode::OK {
        return Err(format!(
            "answered {status}, not 200 (redirects are not followed)"
        ));
    }
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("the policy is longer than {MAX_BODY} bytes")
            } else {
                format!("reading the policy: {e}")
            }
        })?;
    Ok(body.to_bytes())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// `get` against a server that reads the request and answers `reply`.
    async fn answered(reply: Vec<u8>) -> (Result<Bytes, String>, String) {
        let (client, mut server) = tokio::io::duplex(256 * 1024);
        let serve = tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = server.read(&mut buf).await.expect("read");
                assert!(n > 0, "request cut short");
                request.extend_from_slice(&buf[..n]);
            }
            server.write_all(&reply).await.expect("write");
            String::from_utf8(request).expect("text")
        });
        let got = get(client, "mta-sts.example.com", 8443).await;
        (got, serve.await.expect("server"))
    }

    fn response(status: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn a_200_gives_the_body_and_the_request_names_the_host() {
        let (got, request) = answered(response("200 OK", b"version: STSv1\n")).await;
        assert_eq!(got.expect("body"), Bytes::from_static(b"version: STSv1\n"));
        assert!(
            request.starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("host: mta-sts.example.com:8443"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let reply = b"HTTP/1.1 301 Moved Permanently\r\nlocation: https://elsewhere/\r\ncontent-length: 0\r\n\r\n";
        let (got, _) = answered(reply.to_vec()).await;
        let err = got.expect_err("a redirect is a failure");
        assert!(err.contains("301") && err.contains("not 200"), "{err}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let (got, _) = answered(response("200 OK", &vec![b'x'; MAX_BODY + 1])).await;
        let err = got.expect_err("too long");
        assert!(err.contains("longer than"), "{err}");
    }
}
