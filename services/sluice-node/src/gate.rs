//! Connection limits for listeners that may face the internet: at most
//! `max_total` connections open at once, and at most `max_per_ip` from one
//! client address. A listener asks [`Gate::admit`] for each accepted
//! connection and keeps the returned [`Admitted`] for the connection's life
//! ([`GatedStream`] carries it); a refused connection is closed at once (the
//! SMTP listener first says `421`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Inner {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
}

/// Counts a listener's open connections; clones share the counts.
#[derive(Debug, Clone)]
pub struct Gate(Arc<Inner>);

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener has `max_total` connections open.
    Total,
    /// This client address has `max_per_ip` connections open.
    PerIp,
}

impl Refused {
    /// What to tell the client (and the log).
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Total => "too many connections to this listener; try again later",
            Refused::PerIp => "too many connections from your address; close some and retry",
        }
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admitted {
    gate: Gate,
    ip: IpAddr,
}

impl Gate {
    /// A gate for `max_total` connections, `max_per_ip` per client address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self(Arc::new(Inner {
            max_total,
            max_per_ip,
            open: Mutex::new(Open::default()),
        }))
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.0.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `ip`, or says why not.
    pub fn admit(&self, ip: IpAddr) -> Result<Admitted, Refused> {
        let mut open = self.open();
        if open.total >= self.0.max_total {
            return Err(Refused::Total);
        }
        let from_ip = open.by_ip.entry(ip).or_default();
        if *from_ip >= self.0.max_per_ip {
            return Err(Refused::PerIp);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Admitted {
            gate: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open().total
    }

    /// Accepts the next connection `listener` has that the gate admits.
    /// Refused ones are closed (after `refuse` had the chance to answer
    /// them); accept errors (file descriptors exhausted, typically) pause
    /// 100 ms instead of spinning.
    pub async fn accept(
        &self,
        listener: &TcpListener,
        what: &str,
        refuse: impl Fn(TcpStream, Refused),
    ) -> (GatedStream, SocketAddr) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, listener = what, "accept failed; pausing 100 ms (raise the open-file limit if this repeats)");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match self.admit(peer.ip()) {
                Ok(admitted) => {
                    // Answers go out at once: with Nagle's algorithm a
                    // response written in pieces (HTTP/2 headers, data,
                    // trailers) waited for the client's delayed ACK, 40 ms.
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, listener = what, %err, "setting TCP_NODELAY failed");
                    }
                    let gated = GatedStream {
                        stream,
                        _admitted: admitted,
                    };
                    return (gated, peer);
                }
                Err(refused) => {
                    tracing::debug!(%peer, listener = what, reason = refused.reason(), "connection refused");
                    refuse(stream, refused);
                }
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.gate.open();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// A TCP connection holding its place at the gate until dropped.
#[derive(Debug)]
pub struct GatedStream {
    stream: TcpStream,
    _admitted: Admitted,
}

impl tonic::transport::server::Connected for GatedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for GatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// An SMTP listener's answer to a connection the gate refused: `421` with
/// the reason, then the connection closes (in the background: a refused
/// client gets no more of the listener's time than one short write).
pub fn refuse_smtp(stream: tokio::net::TcpStream, why: Refused) {
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut stream = stream;
        let line = format!("421 4.7.0 {}\r\n", why.reason());
        let write = stream.write_all(line.as_bytes());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), write).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn per_address_and_total_limits_hold_and_places_free_on_drop() {
        let gate = Gate::new(3, 2);
        let a1 = gate.admit(ip(1)).expect("first");
        let a2 = gate.admit(ip(1)).expect("second");
        assert_eq!(gate.admit(ip(1)).unwrap_err(), Refused::PerIp);
        let b1 = gate.admit(ip(2)).expect("another address");
        assert_eq!(gate.admit(ip(3)).unwrap_err(), Refused::Total);
        assert_eq!(gate.open_connections(), 3);
        drop(a1);
        let a3 = gate.admit(ip(1)).expect("a place freed");
        drop((a2, a3, b1));
        assert_eq!(gate.open_connections(), 0);
        assert!(
            gate.0.open.lock().unwrap().by_ip.is_empty(),
            "no address left behind"
        );
    }

    #[tokio::test]
    async fn accept_closes_refused_connections_and_hands_over_admitted_ones() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let gate = Gate::new(10, 1);
        let _first = TcpStream::connect(addr).await.expect("connect");
        let (held, _) = gate.accept(&listener, "test", |_, _| {}).await;
        // Answers leave at once (no 40 ms wait for the peer's delayed ACK).
        assert!(held.stream.nodelay().expect("read TCP_NODELAY"));
        let mut second = TcpStream::connect(addr).await.expect("connect");
        let refused = Arc::new(Mutex::new(Vec::new()));
        let seen = refused.clone();
        let (gate2, listener) = (gate.clone(), Arc::new(listener));
        let accepting = tokio::spawn(async move {
            let record = move |_, why| seen.lock().unwrap().push(why);
            gate2.accept(&listener, "test", record).await
        });
        // The second comes from the held one's address: refused and closed.
        let mut buf = [0u8; 1];
        assert_eq!(second.read(&mut buf).await.expect("read"), 0, "closed");
        assert_eq!(*refused.lock().unwrap(), [Refused::PerIp]);
        // Once the first's place is free, the next connection gets in.
        drop(held);
        let _third = TcpStream::connect(addr).await.expect("connect");
        let (admitted, _) = accepting.await.expect("accept task");
        assert_eq!(gate.open_connections(), 1);
        drop(admitted);
        assert_eq!(gate.open_connections(), 0);
    }
}
