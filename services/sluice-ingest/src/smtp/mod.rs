//! SMTP submission: port 587 (STARTTLS, then AUTH PLAIN/LOGIN before MAIL)
//! and port 465 (implicit TLS).

mod lines;
pub mod parser;
mod session;
mod tls;

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use session::{Ended, Session};

use crate::IngestError;
use crate::config::SmtpConfig;
use crate::pipeline::Ingestor;

/// What every SMTP session shares.
#[derive(Clone)]
pub struct SmtpContext {
    ingestor: Arc<Ingestor>,
    hostname: String,
    idle_timeout_secs: u64,
    tls: TlsAcceptor,
}

impl std::fmt::Debug for SmtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpContext")
            .field("hostname", &self.hostname)
            .finish()
    }
}

impl SmtpContext {
    /// Loads or generates the certificate.
    pub fn new(ingestor: Arc<Ingestor>, config: &SmtpConfig) -> Result<Self, IngestError> {
        Ok(Self {
            ingestor,
            hostname: config.hostname.clone(),
            idle_timeout_secs: config.idle_timeout_secs,
            tls: tls::acceptor(config)?,
        })
    }
}

/// Accepts connections until `stopped` turns true, then waits for open
/// sessions (each ends after its current command with 421).
pub async fn serve(
    listener: TcpListener,
    ctx: SmtpContext,
    implicit_tls: bool,
    stopped: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let mut sessions = JoinSet::new();
    let stop = crate::signal(stopped.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(%err, "SMTP accept failed");
                        continue;
                    }
                };
                let ctx = ctx.clone();
                let stopped = stopped.clone();
                sessions.spawn(async move {
                    if let Err(err) = connection(stream, ctx, implicit_tls, stopped).await {
                        tracing::debug!(%peer, %err, "SMTP session ended with an error");
                    }
                });
            }
            () = &mut stop => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    while sessions.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    stream: TcpStream,
    ctx: SmtpContext,
    implicit_tls: bool,
    stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = ctx.tls.clone();
    if implicit_tls {
        let tls = acceptor.accept(stream).await?;
        Session::new(tls, ctx, true, stopped).run(true).await?;
        return Ok(());
    }
    let plain = Session::new(stream, ctx.clone(), false, stopped.clone());
    if let Ended::StartTls(stream) = plain.run(true).await? {
        let tls = acceptor.accept(stream).await?;
        Session::new(tls, ctx, true, stopped).run(false).await?;
    }
    Ok(())
}
