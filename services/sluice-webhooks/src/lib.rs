//! The webhook dispatcher: posts each tenant's events to the webhooks it
//! registered in control (docs/webhooks.md), as JSON signed with
//! HMAC-SHA256 over a timestamp and the body (`Sluice-Signature`).
//!
//! Dispatchers are one consumer group on the events topic, so they scale
//! with its partitions. An event's first attempt is made when it is read;
//! a failed post goes to a retry topic whose records all wait the same
//! delay (so none waits behind a later one) and is tried again from there,
//! for `retry_window` (a day) after its first attempt. A record's offset
//! is committed only once its posts are delivered or handed to a retry
//! topic, so a `kill -9` loses none (some may be posted twice: each body
//! carries the event's id, and receivers de-duplicate by it). A webhook
//! whose posts fail for the whole window is disabled in control, and a
//! `webhook_disabled` event says so.

mod attempt;
pub mod body;
pub mod config;
mod connect;
mod consume;
pub mod health;
mod history;
pub mod metrics;
pub mod post;
pub mod schedule;
pub mod sign;

use std::sync::Arc;

use sluice_log::Log;
use sluice_node::CancellationToken;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use config::WebhooksConfig;
pub use metrics::WebhookMetrics;

/// What can stop the dispatcher.
#[derive(Debug, thiserror::Error)]
pub enum WebhooksError {
    #[error("message log: {0}")]
    Log(#[from] sluice_log::LogError),
    #[error("control: {0}")]
    Control(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// The listeners of a dispatcher.
pub struct WebhooksListeners {
    /// `metrics.listen`, when set (and not served elsewhere, as in dev).
    pub metrics: Option<TcpListener>,
}

/// Posts events until `shutdown` is cancelled, then lets posts in flight
/// finish within `drain_timeout`; `GET /metrics` on `listeners.metrics`.
pub async fn run(
    listeners: WebhooksListeners,
    config: WebhooksConfig,
    log: Log,
    metrics: Arc<WebhookMetrics>,
    shutdown: CancellationToken,
) -> Result<(), WebhooksError> {
    let render: sluice_node::metrics::Render = {
        let metrics = metrics.clone();
        Arc::new(move || metrics.render())
    };
    let ready = sluice_node::probes::always_ready();
    let serving = sluice_node::metrics::serve_optional(
        listeners.metrics,
        &config.metrics,
        &config.tls,
        render,
        ready,
        &shutdown,
    )
    .map_err(|(field, reason)| WebhooksError::Config(format!("{field}: {reason}")))?;
    let serving = tokio::spawn(serving);
    let tenants =
        sluice_control_client::follow(&config.control, &config.tls, "webhooks", shutdown.clone())
            .await
            .map_err(|e| WebhooksError::Control(e.to_string()))?;
    let control = sluice_control_client::lazy_clients(&config.control, &config.tls)
        .map_err(|e| WebhooksError::Control(e.to_string()))?;
    let mut topics = vec![config.events_topic.clone(), config.deliveries_topic.clone()];
    topics.extend(config.retry_delays.iter().map(|&d| config.retry_topic(d)));
    log.ensure_topics(&topics).await?;
    let history = match &config.query_addr {
        Some(addr) => Some(
            history::History::new(addr, config.query_token_file.as_deref(), &config.tls)
                .map_err(WebhooksError::Config)?,
        ),
        None => None,
    };
    let shared = Arc::new(attempt::Shared {
        history,
        health: health::Health::new(config.max_posts_per_webhook),
        poster: post::Poster::new(
            config.timeout.as_duration(),
            config.allow_private_addresses,
            config.max_posts_per_webhook,
        ),
        delays: config
            .retry_delays
            .iter()
            .map(|d| d.as_duration())
            .collect(),
        posts: tokio::sync::Semaphore::new(config.max_concurrent_posts),
        config,
        log,
        tenants,
        control,
        metrics,
        stop: shutdown.clone(),
    });
    let mut members = JoinSet::new();
    members.spawn(consume::run(shared.clone(), consume::Source::Events));
    for tier in 0..shared.config.retry_delays.len() {
        members.spawn(consume::run(shared.clone(), consume::Source::Retry(tier)));
    }
    let mut first_error = None;
    while let Some(ended) = members.join_next().await {
        match ended {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                shutdown.cancel();
                first_error.get_or_insert(err);
            }
            Err(join) => {
                shutdown.cancel();
                first_error
                    .get_or_insert(WebhooksError::Config(format!("a reader failed: {join}")));
            }
        }
    }
    if let Ok(Err(err)) = serving.await {
        tracing::warn!(error = %err, "the metrics endpoint stopped with an error");
    }
    first_error.map_or(Ok(()), Err)
}
