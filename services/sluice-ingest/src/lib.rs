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
pub mod suppression;
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
pub use suppression::{LookupFuture, SuppressionLookup, Suppressions};

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

/// Runs an ingest node on the Kafka cluster of its configuration until
/// `shutdown` resolves, then stops accepting and drains in-flight
/// submissions (each answers once its records are acknowledged). The
/// recorder's suppressions are read as `config.suppressions` says.
pub async fn run(
    listeners: IngestListeners,
    config: IngestConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    // Ingest may start before Kafka: submissions fail as unavailable (and
    // say so) until a broker answers.
    let log = sluice_log::KafkaLog::lazy(config.kafka_client())
        .map_err(|err| IngestError::Config(format!("kafka: {err}")))?;
    let suppressions = Suppressions::from_config(&config.suppressions)?;
    run_on(listeners, config, log.into(), suppressions, shutdown).await
}

/// [`run`] on a message log the caller opened (Kafka or the embedded log of
/// `sluice dev`), consulting `suppressions` (which replaces
/// `config.suppressions`) for every submission.
pub async fn run_on(
    listeners: IngestListeners,
    config: IngestConfig,
    log: sluice_log::Log,
    suppressions: Suppressions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    let mut topics: Vec<String> = config
        .pools
        .iter()
        .map(|pool| format!("{}{pool}", config.kafka.outbound_topic_prefix))
        .collect();
    topics.push(config.kafka.events_topic.clone());
    let wait = Duration::from_millis(config.kafka.publish_timeout_ms);
    match tokio::time::timeout(wait, log.ensure_topics(&topics)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(%err, ?topics, "could not create the topics; submissions fail until they exist (senders and recorders create them too)")
        }
        Err(_) => tracing::warn!(
            ?topics,
            "the message log did not answer while creating the topics; submissions fail until it does (Kafka: `deploy/servers/kafka.sh start`)"
        ),
    }
    let ingestor = Arc::new(Ingestor::new(&config, log)?.with_suppressions(suppressions));
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
    tracing::info!("ingest stopped");
    outcome
}

/// A future that resolves once `stopped` turns true.
async fn signal(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
