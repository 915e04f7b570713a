//! The connection driver: moves bytes between a stream and a [`Session`].
//! Generic over the stream, so tests drive it with `tokio::io::duplex`.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

use sluice_smtp::{Data, DataLimits, Ending, Endings, Line, MAX_COMMAND_LINE, MAX_TEXT_LINE};
use sluice_smtp::{Reply, read_data, read_line};

use crate::provider::Provider;
use crate::session::{Session, Step};

/// Tells a connection to wrap up: `true` means shut down.
pub type Shutdown = watch::Receiver<bool>;

#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    StartTls,
}

enum Input<T> {
    Got(T),
    Stop(Reply),
}

struct Driver<'a, S> {
    io: BufReader<S>,
    out: Vec<u8>,
    shutdown: &'a mut Shutdown,
    idle: Duration,
}

async fn stopped(shutdown: &mut Shutdown) {
    // An error means the sender is gone, which is a shutdown too.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves one SMTP connection from `peer` until QUIT, a closing reply, EOF
/// or shutdown. Upgrades to TLS on STARTTLS when the provider offers it.
pub async fn serve_connection<S>(
    mut stream: S,
    provider: Arc<Provider>,
    peer: IpAddr,
    mut shutdown: Shutdown,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let slot = match provider.open_connection(peer) {
        Ok(slot) => slot,
        Err(refusal) => {
            stream.write_all(&refusal.to_wire()).await?;
            return stream.shutdown().await;
        }
    };
    let banner_delay = Duration::from_millis(provider.config().banner_delay_ms);
    tokio::select! {
        _ = sleep(banner_delay) => {}
        _ = stopped(&mut shutdown) => return Ok(()),
    }
    let mut session = Session::new(Arc::clone(&provider), peer, slot);
    let idle = Duration::from_secs(provider.config().idle_timeout_secs);
    let mut plain = Driver::new(stream, &mut shutdown, idle);
    plain.out.extend_from_slice(&session.banner().to_wire());
    if plain.run(&mut session).await? == End::Closed {
        return plain.close().await;
    }
    let Some(acceptor) = provider.tls().cloned() else {
        return Ok(());
    };
    // Whatever the client pipelined after STARTTLS is dropped with the buffer.
    let inner = plain.io.into_inner();
    let Ok(handshake) = timeout(idle, acceptor.accept(inner)).await else {
        return Ok(());
    };
    session.tls_started();
    let mut secure = Driver::new(handshake?, &mut shutdown, idle);
    secure.run(&mut session).await?;
    secure.close().await
}

impl<'a, S> Driver<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn new(stream: S, shutdown: &'a mut Shutdown, idle: Duration) -> Self {
        Driver {
            io: BufReader::new(stream),
            out: Vec::new(),
            shutdown,
            idle,
        }
    }

    /// Answers commands until the connection ends or STARTTLS begins.
    async fn run(&mut self, session: &mut Session) -> io::Result<End> {
        loop {
            // Pipelining: answer a batch of commands in one write, sent when
            // the client has nothing more buffered (RFC 2920).
            if self.io.buffer().is_empty() {
                self.flush().await?;
            }
            let line = match self.next_line().await? {
                Input::Stop(reply) => return self.finish(session, reply).await,
                Input::Got(Line::Text {
                    text,
                    ending: Ending::CrLf | Ending::Lf,
                }) => text,
                Input::Got(Line::TooLong(Ending::CrLf | Ending::Lf)) => {
                    self.push(&session.line_too_long());
                    continue;
                }
                // The end of the stream; a last line it cut off is dropped.
                Input::Got(_) => return Ok(End::Closed),
            };
            // Policy: bytes that are not UTF-8 are replaced, not refused.
            let text = String::from_utf8_lossy(&line).into_owned();
            let step = session.command(&text, Instant::now());
            if let Some(end) = self.step(session, step).await? {
                return Ok(end);
            }
        }
    }

    async fn step(&mut self, session: &mut Session, step: Step) -> io::Result<Option<End>> {
        match step {
            Step::Reply(reply) if reply.closes() => self.finish(session, reply).await.map(Some),
            Step::Reply(reply) => {
                self.push(&reply);
                Ok(None)
            }
            Step::Close(reply) => self.finish(session, reply).await.map(Some),
            Step::StartTls(reply) => {
                self.push(&reply);
                self.flush().await?;
                Ok(Some(End::StartTls))
            }
            Step::Data(reply) => {
                self.push(&reply);
                self.flush().await?;
                self.data(session).await
            }
        }
    }

    async fn data(&mut self, session: &mut Session) -> io::Result<Option<End>> {
        let config = session.provider().config();
        let limits = DataLimits {
            max_line: MAX_TEXT_LINE,
            max_size: config.max_message_size,
            endings: Endings::Keep,
        };
        let delay = Duration::from_millis(config.data_reply_delay_ms);
        let body = tokio::select! {
            read = read_data(&mut self.io, &limits) => read?,
            _ = stopped(self.shutdown) => return self.finish(session, shutting_down()).await.map(Some),
            _ = sleep(self.idle) => return self.finish(session, timed_out()).await.map(Some),
        };
        let Data::Done(body) = body else {
            return Ok(Some(End::Closed));
        };
        tokio::select! {
            _ = sleep(delay) => {}
            _ = stopped(self.shutdown) => return self.finish(session, shutting_down()).await.map(Some),
        }
        let reply = session.message(body);
        if reply.closes() {
            return self.finish(session, reply).await.map(Some);
        }
        self.push(&reply);
        Ok(None)
    }

    async fn next_line(&mut self) -> io::Result<Input<Line>> {
        tokio::select! {
            line = read_line(&mut self.io, MAX_COMMAND_LINE) => Ok(Input::Got(line?)),
            _ = stopped(self.shutdown) => Ok(Input::Stop(shutting_down())),
            _ = sleep(self.idle) => Ok(Input::Stop(timed_out())),
        }
    }

    fn push(&mut self, reply: &Reply) {
        self.out.extend_from_slice(&reply.to_wire());
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        self.io.flush().await
    }

    /// Sends the last reply. The connection slot is given back first, so a
    /// client that reconnects as soon as it reads the reply is not counted
    /// over the concurrency limit.
    async fn finish(&mut self, session: &mut Session, reply: Reply) -> io::Result<End> {
        session.release_slot();
        self.push(&reply);
        self.flush().await?;
        Ok(End::Closed)
    }

    async fn close(mut self) -> io::Result<()> {
        self.flush().await?;
        // The peer may already be gone; closing is best effort.
        let _ = self.io.shutdown().await;
        Ok(())
    }
}

fn shutting_down() -> Reply {
    Reply::new(
        421,
        "4.3.2 Service shutting down, closing transmission channel",
    )
}

fn timed_out() -> Reply {
    Reply::new(421, "4.4.2 Idle timeout exceeded, closing connection")
}
