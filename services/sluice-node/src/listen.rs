//! A listener's connections as a server takes them: admitted by the
//! connection [`Gate`], then through the TLS handshake when the node has a
//! certificate. Handshakes run concurrently, each within
//! [`HANDSHAKE_TIMEOUT`], so a client that connects and says nothing holds
//! one gate place for that long and delays no one. [`Incoming`] is a
//! `Stream` of connections: tonic's `serve_with_incoming` takes it, and
//! [`serve_http`] serves HTTP from it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::gate::{Gate, GatedStream};
use crate::tls::{ServerTls, TlsConfig, TlsError, check_exposure};

/// Longest a TLS handshake may take before the connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections handed over but not yet taken by the server.
const WAITING: usize = 64;

/// What one listener serves.
pub struct Door<'a> {
    /// The listener's setting (`listen.grpc`), for errors and logs.
    pub setting: &'a str,
    /// Its connection limits.
    pub gate: Gate,
    /// The node's server TLS, if it has a certificate.
    pub tls: Option<&'a ServerTls>,
    /// Protocols offered in ALPN (`[b"h2"]` for gRPC).
    pub alpn: &'a [&'a [u8]],
    /// The `[tls]` section (for `allow_plaintext`).
    pub config: &'a TlsConfig,
}

/// Starts taking connections on `listener`; refuses a plaintext door on a
/// non-loopback address (see [`check_exposure`]).
pub fn open(listener: TcpListener, door: Door<'_>) -> Result<Incoming, TlsError> {
    let local = listener
        .local_addr()
        .map_err(|err| TlsError(format!("{}: {err}", door.setting)))?;
    check_exposure(door.setting, local, door.tls.is_some(), door.config)?;
    let (tx, rx) = mpsc::channel(WAITING);
    let acceptor = door.tls.map(|tls| tls.acceptor(door.alpn));
    let what = door.setting.to_owned();
    let task = tokio::spawn(accept_loop(listener, door.gate, acceptor, what, tx));
    Ok(Incoming {
        rx,
        local,
        task: task.abort_handle(),
    })
}

/// [`open`] for a listener of its own: the server TLS of `config` (no
/// certificate: plaintext), and a refusal off loopback when `unauthenticated`
/// (the service would answer callers without credentials).
pub fn open_for(
    listener: TcpListener,
    setting: &str,
    config: &TlsConfig,
    gate: Gate,
    alpn: &[&[u8]],
    unauthenticated: bool,
) -> Result<Incoming, TlsError> {
    let server = ServerTls::from_config(config)?;
    let addr = listener
        .local_addr()
        .map_err(|err| TlsError(format!("{setting}: {err}")))?;
    crate::tls::check_credentials(setting, addr, unauthenticated)?;
    let door = Door {
        setting,
        gate,
        tls: server.as_ref(),
        alpn,
        config,
    };
    open(listener, door)
}

/// ALPN of gRPC listeners.
pub const GRPC: &[&[u8]] = &[b"h2"];
/// ALPN of HTTP/1.1 listeners.
pub const HTTP1: &[&[u8]] = &[b"http/1.1"];

async fn accept_loop(
    listener: TcpListener,
    gate: Gate,
    tls: Option<TlsAcceptor>,
    what: String,
    tx: mpsc::Sender<Conn>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = tx.closed() => return,
            accepted = gate.accept(&listener, &what, |_, why| {
                tracing::debug!(reason = why.reason(), "connection refused by the gate");
            }) => accepted,
        };
        let Some(acceptor) = &tls else {
            if tx.send(Conn::Plain(stream)).await.is_err() {
                return;
            }
            continue;
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Conn::Tls(Box::new(tls))).await;
                }
                Ok(Err(err)) => tracing::debug!(%peer, %err, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// The connections of one listener, ready to serve.
pub struct Incoming {
    rx: mpsc::Receiver<Conn>,
    local: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Incoming {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl futures::Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

/// One admitted connection, plaintext or after its TLS handshake.
pub enum Conn {
    Plain(GatedStream),
    Tls(Box<TlsStream<GatedStream>>),
}

impl Conn {
    fn gated(&self) -> &GatedStream {
        match self {
            Conn::Plain(stream) => stream,
            Conn::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.gated().connect_info()
    }
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Conn::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Conn::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Longest a client may take to send a request's head (request line and
/// headers) on an HTTP listener; slower clients are disconnected.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` over HTTP/1.1 on `incoming` until `shutdown` is cancelled,
/// then lets the requests in progress finish (the role's drain deadline
/// bounds how long). Unlike `axum::serve`, a request's head must arrive
/// within [`HEADER_TIMEOUT`]: a client that trickles headers (slowloris)
/// does not keep its connection. `shed` bounds the requests in progress;
/// more are answered `503` with `Retry-After` ([`crate::shed`]).
pub async fn serve_http(
    mut incoming: Incoming,
    app: axum::Router,
    shed: crate::shed::Shed,
    shutdown: crate::CancellationToken,
) -> io::Result<()> {
    use futures::StreamExt;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let builder = builder.http1_only();
    let app = app.layer(shed);
    loop {
        let conn = tokio::select! {
            () = shutdown.cancelled() => break,
            next = incoming.next() => match next {
                Some(Ok(conn)) => conn,
                _ => break,
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let served = builder
            .serve_connection_with_upgrades(TokioIo::new(conn), service)
            .into_owned();
        let watched = graceful.watch(served);
        tokio::spawn(async move {
            if let Err(err) = watched.await {
                tracing::trace!(%err, "HTTP connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
