//! The Sluice sender node: consumes a pool's outbound topic and its delay
//! tiers and delivers over SMTP from its own source IPs, within every limit
//! the shaping engine sets.
//!
//! ```text
//! log ──▶ consume (route: static table / DNS; site rollup) ──▶ dispatch (engine,
//!   ready queue per site, idle connections) ──▶ deliver tasks (SMTP) ──▶ dispatch
//!   ──▶ publish fate (event, delay tier) ──▶ offset released ──▶ commit
//! ```

pub mod config;
mod consume;
mod deliver;
mod dispatch;
mod error;
pub mod fate;
pub mod metrics;
pub mod offsets;
pub mod publish;
pub mod reputation;
pub mod route;
pub mod smtp;
mod state;

use std::sync::{Arc, Mutex};

use sluice_log::MessageLog;
use sluice_log::{KafkaConfig, KafkaLog, Log};
use sluice_shaping::Engine;

pub use config::SenderConfig;
pub use dispatch::Stats;
pub use error::SenderError;

use crate::consume::Consume;
use crate::dispatch::Dispatcher;
use crate::offsets::OffsetTracker;
use crate::publish::Publisher;
use crate::route::{Router, StaticRoutes};

/// A configured sender node, ready to run.
pub struct Sender {
    cfg: Arc<SenderConfig>,
    stats: Arc<Mutex<Stats>>,
    metrics: Arc<metrics::SenderMetrics>,
}

impl Sender {
    pub fn new(cfg: SenderConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            stats: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// The node's metrics (serve them with [`metrics::serve`]).
    pub fn metrics(&self) -> Arc<metrics::SenderMetrics> {
        self.metrics.clone()
    }

    /// Live counters (delivered, deferred, ... and queue sizes).
    pub fn stats(&self) -> Arc<Mutex<Stats>> {
        self.stats.clone()
    }

    /// Runs on the Kafka cluster of the configuration until `shutdown`
    /// resolves, then drains: deliveries in progress finish, their fates are
    /// published, and offsets are committed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Stats, SenderError> {
        let kafka = KafkaConfig {
            brokers: self.cfg.kafka.brokers.clone(),
            client_id: self.cfg.node.clone(),
        };
        let log = KafkaLog::connect(kafka).await?;
        self.run_on(log.into(), shutdown).await
    }

    /// [`Sender::run`] on a message log the caller opened (Kafka or the
    /// embedded log of `sluice dev`).
    pub async fn run_on(
        self,
        log: Log,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Stats, SenderError> {
        let cfg = self.cfg.clone();
        let engine = state::load(cfg.state.file.as_deref(), cfg.shaping.clone())?;
        // The consumer rolls domains up with the engine's own rules.
        let sites = engine.sites().clone();
        let topics = self.topics(&engine);
        let mut all = topics.clone();
        all.push(cfg.kafka.events_topic.clone());
        log.ensure_topics(&all).await?;
        let mut consumer = log.subscribe(&cfg.group(), &topics).await?;
        let router = self.router()?;

        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let publisher = Publisher::new(log, cfg.kafka.events_topic.clone());
        let dispatcher = Dispatcher::new(
            cfg.clone(),
            engine,
            publisher,
            tracker.clone(),
            (self.stats.clone(), self.metrics.clone()),
        )
        .ok_or_else(|| SenderError::NoIps(cfg.pool.clone()))?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (signal_tx, signal_rx) = tokio::sync::mpsc::unbounded_channel();
        let following = cfg.reputation.query_addr.clone().map(|addr| {
            let every = std::time::Duration::from_millis(cfg.reputation.interval.0.max(100));
            tokio::spawn(reputation::follow(
                addr,
                every,
                cfg.source_ips(),
                signal_tx.clone(),
            ))
        });
        drop(signal_tx);
        let dispatching = tokio::spawn(dispatcher.run(rx, signal_rx));
        tracing::info!(node = %cfg.node, pool = %cfg.pool, ips = ?cfg.source_ips(), ?topics, "sender running");

        Consume::new(cfg.clone(), router, sites, tracker.clone(), tx)
            .run(&mut consumer, shutdown)
            .await;
        dispatching
            .await
            .map_err(|e| SenderError::Internal(e.to_string()))?;
        if let Some(following) = following {
            following.abort();
        }
        consume::commit(&mut consumer, &tracker).await;
        let stats = self.stats.lock().expect("stats lock").clone();
        tracing::info!(?stats, "sender stopped");
        Ok(stats)
    }

    fn topics(&self, engine: &Engine) -> Vec<String> {
        let mut topics = vec![self.cfg.outbound_topic()];
        topics.extend(
            engine
                .retry()
                .tiers()
                .iter()
                .map(|t| self.cfg.delay_topic(&t.name)),
        );
        topics
    }

    fn router(&self) -> Result<Router, SenderError> {
        let statics = StaticRoutes::new(self.cfg.routes.clone());
        if self.cfg.dns && !self.cfg.dns_servers.is_empty() {
            Ok(Router::with_servers(
                statics,
                &self.cfg.dns_servers,
                self.cfg.smtp.port,
            )?)
        } else if self.cfg.dns {
            Ok(Router::with_system_dns(statics, self.cfg.smtp.port)?)
        } else {
            Ok(Router::static_only(statics))
        }
    }
}
