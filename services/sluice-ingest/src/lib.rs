//! Sluice ingest: accepts mail over gRPC (`sluice.v1.Ingest`), an HTTP JSON
//! API and SMTP submission (587 with STARTTLS, 465 with implicit TLS),
//! authenticates the tenant, validates, checks suppressions, renders
//! templates, signs DKIM and publishes one `Envelope` per recipient to
//! Kafka. Clients get their message ids only after Kafka acknowledged them.
//!
//! The service is a library: [`run`] takes pre-bound listeners, the
//! configuration and a shutdown future.

mod check;
pub mod compliance;
mod compose;
pub mod config;
pub mod dkim;
mod error;
pub mod grpc;
pub mod http;
mod idempotency;
pub mod model;
mod pipeline;
mod publish;
mod raw;
mod records;
pub mod secret;
pub mod smtp;
mod tenant;
mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::IngestConfig;
pub use error::{DURABLE_IDS_METADATA, IngestError};
pub use pipeline::Ingestor;
pub use secret::{hash_password, hash_secret};

/// The pre-bound listeners of the four front doors; `None` leaves one off.
#[derive(Debug, Default)]
pub struct IngestListeners {
    /// gRPC `sluice.v1.Ingest`.
    pub grpc: Option<TcpListener>,
    /// HTTP JSON API and `/openapi.json`.
    pub http: Option<TcpListener>,
    /// SMTP submission with STARTTLS and AUTH (port 587).
    pub smtp_submission: Option<TcpListener>,
    /// SMTP submission over implicit TLS (port 465).
    pub smtp_implicit_tls: Option<TcpListener>,
}

impl IngestListeners {
    /// Binds the addresses of `listen` (for the `sluice ingest` command;
    /// tests bind `127.0.0.1:0` themselves). An empty address leaves that
    /// front door off. Errors name the setting and the address.
    pub async fn bind(listen: &config::ListenConfig) -> Result<Self, IngestError> {
        async fn one(setting: &str, address: &str) -> Result<Option<TcpListener>, IngestError> {
            if address.trim().is_empty() {
                return Ok(None);
            }
            TcpListener::bind(address).await.map(Some).map_err(|err| {
                IngestError::Config(format!("listen.{setting}: cannot bind {address}: {err}"))
            })
        }
        Ok(Self {
            grpc: one("grpc", &listen.grpc).await?,
            http: one("http", &listen.http).await?,
            smtp_submission: one("smtp_submission", &listen.smtp_submission).await?,
            smtp_implicit_tls: one("smtp_implicit_tls", &listen.smtp_implicit_tls).await?,
        })
    }
}

/// How long shutdown waits for Kafka to acknowledge queued records.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs an ingest node until `shutdown` resolves, then stops accepting,
/// drains in-flight submissions and flushes the producer.
pub async fn run(
    listeners: IngestListeners,
    config: IngestConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    let ingestor = Arc::new(Ingestor::new(&config)?);
    let (stop, stopped) = watch::channel(false);
    let mut tasks: JoinSet<Result<(), IngestError>> = JoinSet::new();
    if let Some(listener) = listeners.grpc {
        tasks.spawn(grpc::serve(
            listener,
            ingestor.clone(),
            signal(stopped.clone()),
        ));
    }
    if let Some(listener) = listeners.http {
        tasks.spawn(http::serve(
            listener,
            ingestor.clone(),
            signal(stopped.clone()),
        ));
    }
    let smtp_listeners = [
        (listeners.smtp_submission, false),
        (listeners.smtp_implicit_tls, true),
    ];
    if smtp_listeners.iter().any(|(l, _)| l.is_some()) {
        let context = smtp::SmtpContext::new(ingestor.clone(), &config.smtp)?;
        for (listener, implicit_tls) in smtp_listeners {
            if let Some(listener) = listener {
                let context = context.clone();
                tasks.spawn(smtp::serve(
                    listener,
                    context,
                    implicit_tls,
                    stopped.clone(),
                ));
            }
        }
    }
    tracing::info!("ingest running");
    let early = tokio::select! {
        () = shutdown => None,
        Some(result) = tasks.join_next() => Some(result),
    };
    let _ = stop.send(true);
    let mut outcome = match early {
        Some(Ok(Err(err))) => Err(err),
        Some(Err(join)) => Err(IngestError::Internal(format!("front door task: {join}"))),
        _ => Ok(()),
    };
    while let Some(result) = tasks.join_next().await {
        if let (Ok(()), Ok(Err(err))) = (&outcome, result) {
            outcome = Err(err);
        }
    }
    let flushing = ingestor.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush(FLUSH_TIMEOUT)).await;
    tracing::info!("ingest stopped");
    outcome
}

/// A future that resolves once `stopped` turns true.
async fn signal(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
