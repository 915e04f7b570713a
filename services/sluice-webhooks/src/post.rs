//! One post to a webhook: resolve the host (refusing non-public addresses
//! unless allowed), connect, TLS for `https`, HTTP/1.1 `POST`, and the
//! answer's status. Redirects are not followed; the answer's body is not
//! read. Everything within one timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::task::AbortOnDropHandle;

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

/// Makes posts.
#[derive(Clone)]
pub struct Poster {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    allow_private: bool,
}

impl Poster {
    /// Posts within `timeout`; `allow_private` lets URLs reach loopback and
    /// private addresses.
    pub fn new(timeout: Duration, allow_private: bool) -> Self {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
            allow_private,
        }
    }

    /// Posts `body` with `headers` to `url`: `Ok` on a 2xx answer, else
    /// what went wrong, in words.
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
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let addrs = self.resolve(host, port).await?;
        let stream = connect_any(&addrs).await?;
        let request = request(url, host, headers, body)?;
        if url.scheme() == "https" {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| format!("`{host}` is not a TLS server name: {e}"))?;
            let tls = self
                .tls
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS with {host}: {e}"))?;
            send(tls, request).await
        } else {
            send(stream, request).await
        }
    }

    /// The addresses of `host` a post may go to.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .collect();
        let allowed: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|a| self.allow_private || is_public(a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(format!(
                "{host} resolves to no public address ({} found); posts to private \
                 networks need allow_private_addresses",
                found.len()
            ));
        }
        Ok(allowed)
    }
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
    }
    Err(last)
}

fn request(
    url: &url::Url,
    host: &str,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut builder = Request::post(target)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len());
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder
        .body(Full::new(body))
        .map_err(|e| format!("building the request: {e}"))
}

async fn send<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<u16, Failure>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    // Drives the connection; aborted when this function returns.
    let _driver = AbortOnDropHandle::new(tokio::spawn(conn));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("post failed: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(Failure {
            status: status.as_u16(),
            reason: format!("answered {status} (a 2xx is success; redirects are not followed)"),
        })
    }
}

/// Whether `ip` is an address on the public internet: not loopback,
/// private, link-local, shared (CGNAT), unspecified, multicast,
/// broadcast, documentation or unique-local, nor an IPv4-mapped form of
/// one.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

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
        let poster = Poster::new(Duration::from_secs(5), true);
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
        let poster = Poster::new(Duration::from_secs(5), true);
        let err = poster
            .post(&url, &[], Bytes::from_static(b"{\"a\":1}"))
            .await;
        assert_eq!(err.as_ref().map_err(|f| f.status), Err(302));
        assert!(err.unwrap_err().reason.contains("302"));
        let strict = Poster::new(Duration::from_secs(5), false);
        let err = strict
            .post(&url, &[], Bytes::from_static(b"{\"a\":1}"))
            .await;
        assert!(err.unwrap_err().reason.contains("no public address"));
    }
}
