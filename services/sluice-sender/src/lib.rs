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
pub mod control;
mod deliver;
mod dispatch;
pub mod dsn;
mod error;
pub mod fate;
mod fate_index;
pub mod leases;
pub mod metrics;
mod mta_sts;
pub mod offsets;
pub mod publish;
mod rebalance;
pub mod reputation;
pub mod route;
mod routing;
pub mod smtp;
mod state;
mod wake;
mod waking;

use std::sync::{Arc, Mutex};

use sluice_log::{GroupConsumer, MessageLog};
use sluice_log::{KafkaConfig, KafkaLog, Log};
use sluice_node::CancellationToken;
use sluice_shaping::Engine;
use tokio::net::TcpListener;
use tokio_util::task::AbortOnDropHandle;

pub use config::SenderConfig;
pub use dispatch::Stats;
pub use error::SenderError;
pub use leases::{
    AnyIpStates, AnyLeases, Claim, CqlIpStates, CqlLeases, IpStates, LeaseKind, Leases,
    LocalIpStates, LocalLeases, StoredIpState,
};

use crate::consume::Consume;
use crate::dispatch::Dispatcher;
use crate::fate_index::FateIndex;
use crate::offsets::OffsetTracker;
use crate::publish::Publisher;
use crate::route::{Router, StaticRoutes};

/// The sender's listeners.
#[derive(Debug, Default)]
pub struct SenderListeners {
    /// `GET /metrics` (docs/metrics.md); `None`: no endpoint.
    pub metrics: Option<TcpListener>,
}

impl SenderListeners {
    /// Binds `config.metrics.listen` when set (for `sluice sender`).
    pub async fn bind(config: &SenderConfig) -> Result<Self, SenderError> {
        let metrics = config.metrics.bind().await.map_err(SenderError::Listen)?;
        Ok(Self { metrics })
    }
}

/// What the node reports to: live counters and the metrics registry.
#[derive(Clone, Default)]
pub struct Telemetry {
    /// Live counters (delivered, deferred, ... and queue sizes).
    pub stats: Arc<Mutex<Stats>>,
    /// The metrics served at `GET /metrics`.
    pub metrics: Arc<metrics::SenderMetrics>,
    /// What `GET /metrics` serves instead of `metrics` alone (`sluice dev`:
    /// every role's metrics on the sender's endpoint).
    pub exposition: Option<sluice_node::metrics::Render>,
}

/// What a sender node runs on and reports to.
#[derive(Clone)]
pub struct SenderBackends {
    /// The message log: the pool's topics, the delay tiers and the events.
    pub log: Log,
    /// Counters the node keeps up to date.
    pub telemetry: Telemetry,
    /// Where the node's IP leases are kept (docs/leases.md).
    pub leases: AnyLeases,
}

impl SenderBackends {
    /// Connects to the Kafka cluster of `config` and opens its lease store
    /// (`leases.kind`: the CQL keyspace, or in process).
    pub async fn open(config: &SenderConfig) -> Result<Self, SenderError> {
        let kafka = KafkaConfig::new(config.kafka.brokers.clone(), config.node.clone());
        Ok(Self {
            log: KafkaLog::connect(kafka).await?.into(),
            telemetry: Telemetry::default(),
            leases: open_leases(config).await?,
        })
    }
}

/// The lease store `config.leases` names.
pub async fn open_leases(config: &SenderConfig) -> Result<AnyLeases, SenderError> {
    let section = &config.leases;
    match section.kind {
        LeaseKind::Local => Ok(AnyLeases::Local(LocalLeases::default())),
        LeaseKind::Cql => {
            let cql = sluice_cql::CqlConfig {
                contact_points: section.contact_points.clone(),
                connect_timeout: std::time::Duration::from_secs(10),
            };
            let session = sluice_cql::connect(&cql).await?;
            let leases = CqlLeases::open(session, &section.keyspace, &config.pool).await?;
            Ok(AnyLeases::Cql(leases))
        }
    }
}

/// Runs a sender node until `shutdown` is cancelled, then drains within
/// `config.drain_timeout`: deliveries in progress finish, their fates are
/// published, and offsets are committed. Past the deadline the rest is
/// abandoned; what was not committed is delivered by the next owner.
pub async fn run(
    listeners: SenderListeners,
    config: SenderConfig,
    backends: SenderBackends,
    shutdown: CancellationToken,
) -> Result<(), SenderError> {
    let node = Node {
        cfg: Arc::new(config),
        telemetry: backends.telemetry,
    };
    let drain = node.cfg.drain_timeout.into();
    let render = node.telemetry.exposition.clone().unwrap_or_else(|| {
        let metrics = node.telemetry.metrics.clone();
        Arc::new(move || metrics.render())
    });
    let (section, tls) = (&node.cfg.metrics, &node.cfg.tls);
    let ready = sluice_node::probes::always_ready();
    let serve = sluice_node::metrics::serve_optional(
        listeners.metrics,
        section,
        tls,
        render,
        ready,
        &shutdown,
    )
    .map_err(|(field, reason)| {
        SenderError::Config(sluice_node::ConfigError::invalid("sender", field, reason))
    })?;
    let metrics = AbortOnDropHandle::new(tokio::spawn(serve));
    let work = node.run(backends.log, backends.leases, shutdown.clone());
    let outcome = sluice_node::drain_within("sender", &shutdown, drain, work).await;
    shutdown.cancel();
    let served = metrics
        .await
        .map_err(|e| SenderError::Internal(e.to_string()))?;
    served.map_err(SenderError::Listen)?;
    outcome
}

type Following = tokio::sync::watch::Receiver<Arc<sluice_control_client::ClusterConfig>>;

/// Turns every configuration control publishes into an update for the
/// dispatcher and the pool's IPs for the lease keeper and reputation.
async fn apply_control(
    mut following: Following,
    base: Arc<SenderConfig>,
    updates: tokio::sync::mpsc::UnboundedSender<control::ControlUpdate>,
    ips: tokio::sync::watch::Sender<Vec<std::net::IpAddr>>,
) {
    while following.changed().await.is_ok() {
        let cluster = following.borrow_and_update().clone();
        let update = control::ControlUpdate::new(&base, &cluster);
        ips.send_if_modified(|now| {
            let next = update.cfg.source_ips();
            let changed = *now != next;
            *now = next;
            changed
        });
        if updates.send(update).is_err() {
            return;
        }
    }
}

/// A configured sender node.
struct Node {
    cfg: Arc<SenderConfig>,
    telemetry: Telemetry,
}

impl Node {
    async fn run(
        self,
        log: Log,
        leases: AnyLeases,
        shutdown: CancellationToken,
    ) -> Result<(), SenderError> {
        let base = self.cfg.clone();
        let tls = smtp::TlsClients::from_trust_file(base.smtp.tls_trust_file.as_deref())
            .map(Arc::new)
            .map_err(|reason| {
                sluice_node::ConfigError::invalid("sender", "smtp.tls_trust_file", reason)
            })?;
        let following = self.follow_control(&shutdown).await?;
        let first = following.as_ref().map(|f| {
            let cluster = f.borrow().clone();
            control::ControlUpdate::new(&base, &cluster)
        });
        let cfg = first
            .as_ref()
            .map_or_else(|| base.clone(), |u| u.cfg.clone());
        let engine = state::load(cfg.state.file.as_deref(), cfg.shaping.clone())?;
        // The consumer rolls domains up with the engine's own rules.
        let sites = engine.sites().clone();
        let topics = self.topics(&engine);
        let tiers: std::collections::HashMap<String, sluice_shaping::Span> = engine
            .retry()
            .tiers()
            .iter()
            .map(|t| (cfg.delay_topic(&t.name), t.delay))
            .collect();
        log.ensure_topics_as(&self.topic_specs(&topics)).await?;
        let index = FateIndex::open(log.clone(), cfg.fates_topic(), cfg.group(), &topics).await?;
        let index = Arc::new(index);
        let mut consumer = log.subscribe(&cfg.group(), &topics).await?;
        let router = self.router()?;
        let mta_sts = mta_sts::from_config(&cfg.smtp, &router, &tls);

        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let wake_log = log.clone();
        let publisher =
            Publisher::new(log, cfg.kafka.events_topic.clone()).with_index(index.clone());
        let telemetry = (self.telemetry.stats.clone(), self.telemetry.metrics.clone());
        let dispatcher = Dispatcher::new(
            cfg.clone(),
            engine,
            publisher,
            tracker.clone(),
            telemetry,
            tls,
        )
        .with_fence(consumer.fence())
        .with_ip_states(leases.ip_states());
        let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel();
        let site_queues = Arc::new(wake::SiteQueues::default());
        let dispatcher = dispatcher.with_wakes(wake_tx, site_queues.clone());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ips_tx, ips_rx) = tokio::sync::watch::channel(cfg.source_ips());
        let (control_tx, control_rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(first) = first {
            let _ = control_tx.send(first);
        }
        let _applying = following.map(|following| {
            let apply = apply_control(following, base.clone(), control_tx, ips_tx);
            AbortOnDropHandle::new(tokio::spawn(apply))
        });
        let (signal_tx, signal_rx) = tokio::sync::mpsc::unbounded_channel();
        let bearer = sluice_control_client::Bearer::from_setting(
            "reputation.token_file",
            cfg.reputation.token_file.as_deref(),
        )
        .map_err(|reason| {
            sluice_node::ConfigError::invalid("sender", "reputation.token_file", reason)
        })?;
        let _following = cfg.reputation.query_addr.clone().map(|addr| {
            let every = std::time::Duration::from_millis(cfg.reputation.interval.0.max(100));
            let tls = self.cfg.tls.clone();
            let follow =
                reputation::follow(addr, bearer, tls, every, ips_rx.clone(), signal_tx.clone());
            AbortOnDropHandle::new(tokio::spawn(follow))
        });
        drop(signal_tx);
        let (lease_tx, lease_rx) = tokio::sync::mpsc::unbounded_channel();
        leases::warn_foreign(&cfg.source_ips());
        let keeper = leases::keeper::Keeper::new(leases, &cfg.node, &cfg.source_ips(), &cfg.leases)
            .only_from(leases::can_send_from);
        let every = cfg.leases.renew_interval.into();
        let changing = base.control.enabled().then_some(ips_rx);
        let keep = leases::keeper::keep(keeper, every, lease_tx, changing);
        let keeping = AbortOnDropHandle::new(tokio::spawn(keep));
        let run = dispatcher.run(rx, signal_rx, lease_rx, control_rx);
        let dispatching = AbortOnDropHandle::new(tokio::spawn(run));
        tracing::info!(node = %cfg.node, pool = %cfg.pool, ips = ?cfg.source_ips(), ?topics, "sender running");

        Consume::new(cfg.clone(), router, sites, tracker.clone(), tx)
            .with_mta_sts(mta_sts)
            .with_index(index.clone())
            .with_lag(self.telemetry.metrics.consumer_lag.clone())
            .with_wakes(waking::Waking::new(
                (wake_log, tiers),
                (wake_rx, site_queues),
                self.telemetry.metrics.woken.clone(),
            ))
            .run(&mut consumer, shutdown.cancelled())
            .await;
        dispatching
            .await
            .map_err(|e| SenderError::Internal(e.to_string()))?;
        // The dispatcher is gone: the keeper releases every lease (bounded).
        let released = tokio::time::timeout(cfg.leases.margin.into(), keeping).await;
        if released.is_err() {
            tracing::warn!("leases not released in time; they expire by themselves");
        }
        consume::commit(&mut consumer, &tracker, &index).await;
        let stats = self.telemetry.stats.lock().expect("stats lock").clone();
        tracing::info!(?stats, "sender stopped");
        Ok(())
    }

    /// With `control.addr` set: control's first snapshot, and the channel
    /// of the configurations that follow.
    async fn follow_control(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Following>, SenderError> {
        if !self.cfg.control.enabled() {
            return Ok(None);
        }
        let following = sluice_control_client::follow(
            &self.cfg.control,
            &self.cfg.tls,
            &self.cfg.node,
            shutdown.clone(),
        )
        .await?;
        Ok(Some(following))
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

    /// `topics` (outbound first, then the delay tiers) and the events topic,
    /// each with the spec of its family.
    fn topic_specs(&self, topics: &[String]) -> Vec<(String, sluice_log::TopicSpec)> {
        let specs = &self.cfg.topics;
        let mut all: Vec<_> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), if i == 0 { specs.outbound } else { specs.delay }))
            .collect();
        all.push((self.cfg.kafka.events_topic.clone(), specs.events));
        all
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
