//! Sluice ingest: accepts mail over gRPC (`sluice.v1.Ingest`), an HTTP JSON
//! API and SMTP submission (587 with STARTTLS, 465 with implicit TLS),
//! authenticates the tenant, validates, checks suppressions, renders
//! templates, signs DKIM and publishes one `Envelope` per recipient to
//! Kafka. Clients get their message ids only after Kafka acknowledged them.
//!
//! The service is a library with the shape every role has:
//! [`run`]`(listeners, config, backends, shutdown)`.

mod check;
pub mod compliance;
mod compose;
pub mod config;
pub mod directory;
pub mod dkim;
mod error;
mod follow;
#[doc(hidden)]
pub mod fuzz;
pub mod grpc;
pub mod http;
mod idempotency;
mod mailbox;
pub mod metrics;
pub mod model;
mod pipeline;
mod publish;
pub mod quota;
mod raw;
mod records;
pub mod secret;
pub mod shared_keys;
pub mod smtp;
pub mod suppression;
mod suppression_grpc;
mod suppression_http;
pub mod suppression_list;
mod template_rules;
mod tenant;
pub use sluice_links::tracking;
mod tracking_html;
mod validate;
mod webhook_api;
mod webhook_grpc;

use std::sync::Arc;

use sluice_node::CancellationToken;
use sluice_node::gate::Gate;
use tokio::net::TcpListener;
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
    /// `GET /metrics` (docs/metrics.md); bound from `metrics.listen` by
    /// `sluice ingest`.
    pub metrics: Option<TcpListener>,
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
            let setting = format!("listen.{setting}");
            let bound = sluice_node::bind(&setting, address).await;
            bound
                .map(Some)
                .map_err(|err| IngestError::Config(err.to_string()))
        }
        Ok(Self {
            grpc: one("grpc", &listen.grpc).await?,
            http: one("http", &listen.http).await?,
            smtp_submission: one("smtp_submission", &listen.smtp_submission).await?,
            smtp_implicit_tls: one("smtp_implicit_tls", &listen.smtp_implicit_tls).await?,
            metrics: None,
        })
    }
}

/// What an ingest node runs on: the message log it publishes to, the
/// suppressions it checks and where its idempotency keys live.
pub struct IngestBackends {
    pub log: sluice_log::Log,
    pub suppressions: Suppressions,
    pub idempotency: shared_keys::Idempotency,
    /// Where this node heartbeats so that tenant quotas are divided among
    /// the live ingest nodes; `None`: this node keeps whole quotas.
    pub heartbeat: Option<Arc<dyn quota::NodeHeartbeat>>,
    /// Where the node counts its work (docs/metrics.md).
    pub metrics: Arc<metrics::IngestMetrics>,
}

impl IngestBackends {
    /// The Kafka cluster, suppression source and idempotency-key store
    /// `config` names. Ingest may
    /// start before Kafka: submissions fail as unavailable (and say so) until
    /// a broker answers.
    pub fn open(config: &IngestConfig) -> Result<Self, IngestError> {
        let log = sluice_log::KafkaLog::lazy(config.kafka_client())
            .map_err(|err| IngestError::Config(format!("kafka: {err}")))?;
        let suppressions = Suppressions::from_config(&config.suppressions, &config.tls)?;
        Ok(Self {
            log: log.into(),
            suppressions,
            idempotency: shared_keys::Idempotency::from_config(&config.idempotency, &config.tls)?,
            heartbeat: quota::QueryHeartbeat::from_config(config)?,
            metrics: Arc::default(),
        })
    }
}

/// Runs an ingest node on `backends` until `shutdown` is cancelled, then
/// stops accepting and drains in-flight submissions (each answers once its
/// records are acknowledged) for at most `config.drain_timeout`.
pub async fn run(
    listeners: IngestListeners,
    config: IngestConfig,
    backends: IngestBackends,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let log = backends.log.clone();
    let ingestor = Ingestor::new(&config, backends.log)?
        .with_suppressions(backends.suppressions)
        .with_suppression_list(suppression_list::SuppressionList::from_config(&config)?)
        .with_idempotency(backends.idempotency)
        .with_metrics(backends.metrics);
    let ingestor = Arc::new(ingestor);
    let following = follow::start(&config, &ingestor, &shutdown).await?;
    start_heartbeats(backends.heartbeat, &config, &ingestor, &shutdown).await;
    let pools: Vec<String> = ingestor.directory().pools().iter().cloned().collect();
    ensure_topics(&config, &log, &pools).await;
    let mut tasks = front_doors(listeners, &config, &ingestor, &shutdown)?;
    if let Some(following) = following {
        tasks.spawn(follow::apply(
            following,
            ingestor.clone(),
            config.clone(),
            log,
        ));
    }
    tracing::info!("ingest running");
    let drain = config.drain_timeout.into();
    let outcome = sluice_node::drain_within("ingest", &shutdown, drain, async {
        let mut outcome = Ok(());
        while let Some(result) = tasks.join_next().await {
            // A front door that stops on its own stops the node.
            shutdown.cancel();
            let result = result
                .map_err(|join| IngestError::Internal(format!("front door task: {join}")))
                .and_then(|r| r);
            if let (Ok(()), Err(err)) = (&outcome, result) {
                outcome = Err(err);
            }
        }
        outcome
    })
    .await;
    tracing::info!("ingest stopped");
    outcome
}

/// With a heartbeat: learns the live ingest nodes once before the front
/// doors open (so a joining node does not take a whole quota), then keeps
/// heartbeating until `shutdown`.
async fn start_heartbeats(
    heartbeat: Option<Arc<dyn quota::NodeHeartbeat>>,
    config: &IngestConfig,
    ingestor: &Arc<Ingestor>,
    shutdown: &CancellationToken,
) {
    let Some(beat) = heartbeat else {
        return;
    };
    let heartbeats = quota::Heartbeats::new(beat, config);
    let live = ingestor.live_nodes().clone();
    let answered = heartbeats.once(&live, false).await;
    tracing::info!(node = %heartbeats.node, live_nodes = live.get(), "tenant quotas are shared by the live ingest nodes");
    tokio::spawn(heartbeats.run(live, !answered, shutdown.clone()));
}

/// Creates the topics the node writes to; a log that does not answer is
/// logged (submissions fail until it does), not fatal.
pub(crate) async fn ensure_topics(config: &IngestConfig, log: &sluice_log::Log, pools: &[String]) {
    let specs = &config.topics;
    let mut topics: Vec<(String, sluice_log::TopicSpec)> = pools
        .iter()
        .map(|pool| {
            let topic = format!("{}{pool}", config.kafka.outbound_topic_prefix);
            (topic, specs.outbound)
        })
        .collect();
    topics.push((config.kafka.events_topic.clone(), specs.events));
    let wait = config.kafka.publish_timeout.into();
    match tokio::time::timeout(wait, log.ensure_topics_as(&topics)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(%err, ?topics, "could not create the topics; submissions fail until they exist (senders and recorders create them too)")
        }
        Err(_) => tracing::warn!(
            ?topics,
            "the message log did not answer while creating the topics; submissions fail until it does (Kafka: `deploy/servers/kafka.sh start`)"
        ),
    }
}

/// Starts a server per listener; each stops on `shutdown`. A gRPC or HTTP
/// listener off loopback without TLS is refused here, before any serves.
fn front_doors(
    listeners: IngestListeners,
    config: &IngestConfig,
    ingestor: &Arc<Ingestor>,
    shutdown: &CancellationToken,
) -> Result<JoinSet<Result<(), IngestError>>, IngestError> {
    let mut tasks = JoinSet::new();
    use sluice_node::listen::{Door, open};
    let bad = |err: sluice_node::tls::TlsError| IngestError::Config(err.0);
    // One certificate (and its reloading) for both doors.
    let tls = sluice_node::tls::ServerTls::from_config(&config.tls).map_err(bad)?;
    let door = |listener, setting, alpn| {
        let limits = ingestor.limits();
        let door = Door {
            setting,
            gate: Gate::new(limits.max_connections, limits.max_connections_per_ip),
            tls: tls.as_ref(),
            alpn,
            config: &config.tls,
        };
        open(listener, door).map_err(bad)
    };
    if let Some(listener) = listeners.grpc {
        let incoming = door(listener, "listen.grpc", sluice_node::listen::GRPC)?;
        tasks.spawn(grpc::serve(incoming, ingestor.clone(), shutdown.clone()));
    }
    if let Some(listener) = listeners.http {
        let incoming = door(listener, "listen.http", sluice_node::listen::HTTP1)?;
        tasks.spawn(http::serve(incoming, ingestor.clone(), shutdown.clone()));
    }
    if listeners.metrics.is_some() {
        let metrics = ingestor.metrics().clone();
        let render: sluice_node::metrics::Render = Arc::new(move || metrics.render());
        let (section, tls) = (&config.metrics, &config.tls);
        let check = http::readiness(ingestor);
        let serve = sluice_node::metrics::serve_optional(
            listeners.metrics,
            section,
            tls,
            render,
            check,
            shutdown,
        )
        .map_err(|(field, reason)| IngestError::Config(format!("{field}: {reason}")))?;
        tasks.spawn(async move { serve.await.map_err(IngestError::Io) });
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
                    shutdown.clone(),
                ));
            }
        }
    }
    Ok(tasks)
}
