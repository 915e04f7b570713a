//! The inbound role: an SMTP MX for the VERP addresses Sluice sends from
//! (`bounce+<message id>-<tag>@<bounce domain>`, `sluice_node::verp`).
//! Mail to any other address is refused at RCPT. A delivery status
//! notification (RFC 3464) or a provider's own bounce becomes an event on
//! the events topic: `bounced` for a permanent failure (classified with the
//! sender's bounce classes; hard classes suppress the recipient for the
//! tenant), `deferred` for a delay report; automatic replies are taken and
//! dropped. ARF complaints (RFC 5965) become `complained` events. The
//! events carry the message id only; the recorder fills in the tenant, the
//! recipient and where the message went from the message's history
//! (docs/feedback.md#asynchronous-bounces).

pub mod arf;
pub mod config;
pub mod dsn;
mod links;
pub mod metrics;
mod session;

use std::sync::Arc;

use prost::Message;
use sluice_log::{Log, MessageLog};
use sluice_node::CancellationToken;
use sluice_node::gate::{Gate, refuse_smtp};
use sluice_node::verp::Verp;
use sluice_proto::v1::{BounceClass, Event, EventKind, SmtpReply};
use sluice_shaping::Classifier;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use config::InboundConfig;

pub use sluice_node::verp::LATE_ATTEMPT;

/// What can stop the role.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("inbound listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("message log: {0}")]
    Log(#[from] sluice_log::LogError),
    #[error("configuration: {0}")]
    Config(String),
}

/// What became of a message to VERP addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// This many events (recipients × statuses) are in the log.
    Recorded(usize),
    /// An automatic reply: taken, nothing recorded.
    AutoReply,
    /// Neither a report nor a known bounce format: refused.
    Unrecognised,
    /// A report without one failed or delayed recipient status that reads:
    /// refused.
    NoStatus,
    /// A complaint that names no message sent from here: refused.
    Unmatched,
}

/// What every session shares.
#[derive(Clone)]
pub(crate) struct Inbound {
    config: Arc<InboundConfig>,
    verp: Verp,
    log: Log,
    classifier: Arc<Classifier>,
    metrics: Arc<metrics::InboundMetrics>,
}

impl Inbound {
    /// Whether `address` is one of the feedback-loop addresses.
    fn is_feedback_address(&self, address: &str) -> bool {
        self.config
            .feedback_addresses
            .iter()
            .any(|a| a.eq_ignore_ascii_case(address))
    }

    /// Publishes the events a message to `messages` (ids from its VERP
    /// recipients; none when it went to a feedback address only) says;
    /// returns once the log holds them.
    async fn take(&self, messages: &[String], body: &[u8]) -> Result<Taken, sluice_log::LogError> {
        if let Some(complaint) = arf::read(body) {
            return self.complaint(messages, &complaint).await;
        }
        if messages.is_empty() {
            return Ok(Taken::Unrecognised);
        }
        let statuses = match dsn::read(body) {
            dsn::Finding::Bounce(statuses) => statuses,
            dsn::Finding::AutoReply => return Ok(Taken::AutoReply),
            dsn::Finding::Unrecognised => return Ok(Taken::Unrecognised),
        };
        if statuses.is_empty() {
            return Ok(Taken::NoStatus);
        }
        let recorded = messages.len() * statuses.len();
        for message_id in messages {
            for status in &statuses {
                let event = self.event(message_id, status);
                let kind = if status.failed { "bounced" } else { "deferred" };
                self.metrics.event(kind);
                let payload = event.encode_to_vec();
                let topic = &self.config.events_topic;
                self.log
                    .append(topic, message_id.as_bytes(), &payload)
                    .await?;
            }
        }
        Ok(Taken::Recorded(recorded))
    }

    /// Publishes an `unsubscribed` event for each message id (from
    /// `mailto:` unsubscribe addresses); the recorder suppresses the
    /// message's recipient for its tenant.
    async fn unsubscribe(&self, messages: &[String]) -> Result<(), sluice_log::LogError> {
        for message_id in messages {
            let event = Event {
                event_id: ulid::Ulid::new().to_string(),
                kind: EventKind::Unsubscribed.into(),
                message_id: message_id.clone(),
                attempt: LATE_ATTEMPT,
                at: Some(std::time::SystemTime::now().into()),
                ..Default::default()
            };
            let topic = &self.config.events_topic;
            self.log
                .append(topic, message_id.as_bytes(), &event.encode_to_vec())
                .await?;
            self.metrics.event("unsubscribed");
        }
        Ok(())
    }

    /// A complaint: the message it names (a VERP recipient, the original's
    /// VERP return path, or a `Message-ID` Sluice wrote) gets a
    /// `complained` event; `not-spam` reports record nothing.
    async fn complaint(
        &self,
        messages: &[String],
        complaint: &arf::Complaint,
    ) -> Result<Taken, sluice_log::LogError> {
        if complaint.feedback_type == "not-spam" {
            return Ok(Taken::Recorded(0));
        }
        let message_id = messages
            .first()
            .cloned()
            .or_else(|| self.verp.message_id(&complaint.return_path))
            .or_else(|| arf::sluice_message_id(&complaint.message_id_header));
        let Some(message_id) = message_id else {
            return Ok(Taken::Unmatched);
        };
        let event = Event {
            event_id: ulid::Ulid::new().to_string(),
            kind: EventKind::Complained.into(),
            message_id: message_id.clone(),
            // The message's own recipient, from its history (the recorder):
            // what a report claims is not trusted with a suppression.
            recipient: String::new(),
            attempt: LATE_ATTEMPT,
            at: Some(std::time::SystemTime::now().into()),
            reply: Some(SmtpReply {
                text: format!("feedback-type: {}", complaint.feedback_type),
                ..Default::default()
            }),
            ..Default::default()
        };
        let topic = &self.config.events_topic;
        self.log
            .append(topic, message_id.as_bytes(), &event.encode_to_vec())
            .await?;
        self.metrics.event("complained");
        Ok(Taken::Recorded(1))
    }

    fn event(&self, message_id: &str, status: &dsn::Status) -> Event {
        let classified = self
            .classifier
            .classify_dsn(status.status, &status.diagnostic);
        let (kind, code) = if status.failed {
            (EventKind::Bounced, 550)
        } else {
            (EventKind::Deferred, 450)
        };
        let class = if status.failed {
            sluice_sender::fate::wire_class(classified.class)
        } else {
            BounceClass::OtherTemporary
        };
        Event {
            event_id: ulid::Ulid::new().to_string(),
            kind: kind.into(),
            message_id: message_id.to_owned(),
            // The message's own recipient, from its history (the recorder):
            // a report's Final-Recipient may be a forwarding target.
            recipient: String::new(),
            attempt: LATE_ATTEMPT,
            at: Some(std::time::SystemTime::now().into()),
            reply: Some(SmtpReply {
                code,
                enhanced_code: status.status.to_string(),
                text: status.diagnostic.clone(),
                synthetic: false,
            }),
            bounce_class: class.into(),
            ..Default::default()
        }
    }
}

/// The listeners of an inbound node.
pub struct InboundListeners {
    /// The MX.
    pub smtp: TcpListener,
    /// `metrics.listen`, when set (and not served elsewhere, as in dev).
    pub metrics: Option<TcpListener>,
    /// `http.listen`, when set: the link endpoints.
    pub http: Option<TcpListener>,
}

/// Serves the MX until `shutdown` is cancelled, then lets open sessions
/// finish within `drain_timeout`; `GET /metrics` on `listeners.metrics`.
pub async fn run(
    listeners: InboundListeners,
    config: InboundConfig,
    log: Log,
    metrics: Arc<metrics::InboundMetrics>,
    shutdown: CancellationToken,
) -> Result<(), InboundError> {
    let render: sluice_node::metrics::Render = {
        let metrics = metrics.clone();
        Arc::new(move || metrics.render())
    };
    let tls = sluice_node::tls::TlsConfig::default();
    let ready = sluice_node::probes::always_ready();
    let serving = sluice_node::metrics::serve_optional(
        listeners.metrics,
        &config.metrics,
        &tls,
        render,
        ready,
        &shutdown,
    )
    .map_err(|(field, reason)| InboundError::Config(format!("{field}: {reason}")))?;
    let serving = tokio::spawn(serving);
    let links = match listeners.http {
        Some(listener) => Some(tokio::spawn(links::serve(
            listener,
            &config,
            log.clone(),
            metrics.clone(),
            shutdown.clone(),
        )?)),
        None => None,
    };
    let listener = listeners.smtp;
    let inbound = Inbound {
        verp: Verp::new(&config.secret),
        classifier: Arc::new(Classifier::default()),
        config: Arc::new(config),
        log,
        metrics,
    };
    let cfg = &inbound.config;
    let (cert, key) = (cfg.cert_file.as_deref(), cfg.key_file.as_deref());
    let acceptor = sluice_node::tls::smtp_acceptor(cert, key, &cfg.hostname, "inbound")
        .map_err(|err| InboundError::Config(err.0))?;
    let gate = Gate::new(cfg.max_connections, cfg.max_connections_per_ip);
    tracing::info!(addr = %listener.local_addr()?, "inbound MX listening");
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            (stream, peer) = gate.accept(&listener, "inbound MX", refuse_smtp) => {
                inbound.metrics.sessions.inc();
                let (inbound, acceptor) = (inbound.clone(), acceptor.clone());
                sessions.spawn(async move {
                    if let Err(err) = connection(stream, inbound, acceptor).await {
                        tracing::debug!(%peer, %err, "inbound session ended with an error");
                    }
                });
            }
            () = shutdown.cancelled() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    let drain: std::time::Duration = inbound.config.drain_timeout.into();
    let _ = tokio::time::timeout(drain, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if let Ok(Err(err)) = serving.await {
        tracing::warn!(error = %err, "the metrics endpoint stopped with an error");
    }
    if let Some(Ok(Err(err))) = match links {
        Some(task) => Some(task.await),
        None => None,
    } {
        tracing::warn!(error = %err, "the link endpoints stopped with an error");
    }
    Ok(())
}

/// One MX connection: a plain session, then, after STARTTLS, a session
/// inside TLS. The handshake gets the idle timeout, like a command.
async fn connection<S>(
    stream: S,
    inbound: Inbound,
    acceptor: tokio_rustls::TlsAcceptor,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let handshake: std::time::Duration = inbound.config.idle_timeout.into();
    let plain = session::Session::new(stream, inbound.clone(), false);
    if let session::Ended::StartTls(stream) = plain.run().await? {
        let tls = tokio::time::timeout(handshake, acceptor.accept(stream))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        inbound.metrics.tls_sessions.inc();
        session::Session::new(tls, inbound, true).run().await?;
    }
    Ok(())
}
