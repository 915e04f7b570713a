//! `sluice dev`: ingest, sender, recorder and control in one process, on the
//! embedded message log, ledger and control store in one data directory.
//! The same service code runs here as on Kafka and ScyllaDB; only the back
//! ends handed to each role's `run` differ.

pub mod config;
mod follow;
mod ledger;
mod store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sluice_log::EmbeddedLog;
use sluice_log::Log;
use sluice_node::{CancellationToken, Supervisor};
use sluice_recorder::{AnyLedger, EmbeddedLedger};

pub use config::DevConfig;

/// Where each service of a running `sluice dev` listens.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub ingest_grpc: SocketAddr,
    pub ingest_http: SocketAddr,
    pub smtp_submission: Option<SocketAddr>,
    pub query: SocketAddr,
    pub control: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub inbound: SocketAddr,
    /// The inbound role's link endpoints, when `inbound.http.listen` is set.
    pub inbound_http: Option<SocketAddr>,
}

impl std::fmt::Display for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  ingest gRPC     {}", self.ingest_grpc)?;
        writeln!(f, "  ingest HTTP     http://{}", self.ingest_http)?;
        if let Some(smtp) = self.smtp_submission {
            writeln!(f, "  SMTP submission {smtp}")?;
        }
        writeln!(f, "  query gRPC      {}", self.query)?;
        writeln!(f, "  control gRPC    {}", self.control)?;
        if let Some(http) = self.inbound_http {
            writeln!(f, "  inbound HTTP    http://{http}")?;
        }
        writeln!(f, "  inbound MX      {}", self.inbound)?;
        if let Some(metrics) = self.metrics {
            writeln!(f, "  metrics         http://{metrics}/metrics")?;
        }
        Ok(())
    }
}

/// A running `sluice dev`.
pub struct Running {
    pub endpoints: Endpoints,
    log: Log,
    stats: Arc<Mutex<sluice_sender::Stats>>,
    roles: Supervisor<anyhow::Error>,
}

/// A role's name and how it ended.
type Task = (&'static str, anyhow::Result<()>);

/// Every role's listeners, bound before any role starts.
struct Listeners {
    control: sluice_control::ControlListeners,
    recorder: sluice_recorder::RecorderListeners,
    ingest: sluice_ingest::IngestListeners,
    sender: sluice_sender::SenderListeners,
    inbound: tokio::net::TcpListener,
    inbound_http: Option<tokio::net::TcpListener>,
}

impl Listeners {
    async fn bind(cfg: &DevConfig) -> anyhow::Result<Self> {
        Ok(Self {
            control: sluice_control::ControlListeners::bind(&cfg.control).await?,
            recorder: sluice_recorder::RecorderListeners::bind(&cfg.recorder).await?,
            ingest: sluice_ingest::IngestListeners::bind(&cfg.ingest.listen).await?,
            sender: sluice_sender::SenderListeners::bind(&cfg.sender).await?,
            inbound: tokio::net::TcpListener::bind(&cfg.inbound.listen)
                .await
                .with_context(|| {
                    format!("cannot listen on inbound.listen {}", cfg.inbound.listen)
                })?,
            inbound_http: match cfg.inbound.http.listen.as_str() {
                "" => None,
                addr => Some(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("cannot listen on inbound.http.listen {addr}"))?,
                ),
            },
        })
    }

    fn endpoints(&self) -> anyhow::Result<Endpoints> {
        let local =
            |l: &Option<tokio::net::TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        Ok(Endpoints {
            ingest_grpc: local(&self.ingest.grpc)
                .context("ingest.listen.grpc must be set in dev")?,
            ingest_http: local(&self.ingest.http)
                .context("ingest.listen.http must be set in dev")?,
            smtp_submission: local(&self.ingest.smtp_submission),
            query: self.recorder.query.local_addr()?,
            control: self.control.grpc.local_addr()?,
            metrics: local(&self.sender.metrics),
            inbound: self.inbound.local_addr()?,
            inbound_http: local(&self.inbound_http),
        })
    }
}

/// Opens the back ends in `cfg.data_dir` and starts every role through its
/// own `run` entry point, all stopping on one token.
pub async fn start(mut cfg: DevConfig) -> anyhow::Result<Running> {
    cfg.check_exposure()?;
    let dir = cfg.data_dir.clone();
    sluice_node::secret::private_dir(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    cfg.secret()?;
    let generated = cfg
        .generated_control_token()
        .then(|| cfg.control_token_file());
    cfg.control_token()?;
    // Query takes the same admin token and the tenants' API keys; the
    // sender reads reputation with that token.
    cfg.query_access(generated.clone());
    let (log, ledger, store) = open_back_ends(&dir, &cfg.recorder).await?;
    let listeners = Listeners::bind(&cfg).await?;
    let endpoints = listeners.endpoints()?;
    // The sender follows this node's reputation and keeps its counters here.
    cfg.sender
        .reputation
        .query_addr
        .get_or_insert_with(|| format!("http://{}", endpoints.query));
    cfg.sender
        .state
        .file
        .get_or_insert_with(|| dir.join("sender-state.json"));

    // The MX for bounces and the link endpoints: ingest's secret signs the
    // VERP addresses and the links.
    let inbound_config = cfg.inbound_config();
    let mut roles = Supervisor::new(CancellationToken::new());
    let token = roles.token();
    // Ingest checks every submission against the ledger's suppressions and
    // keeps its idempotency keys there (they survive restarts).
    let in_process = Arc::new(ledger::InProcessLedger(ledger.clone()));
    let suppressions = sluice_ingest::Suppressions::in_process(in_process.clone());
    let idempotency = sluice_ingest::shared_keys::Idempotency::shared(
        in_process,
        "the in-process ledger".into(),
        &cfg.ingest.idempotency,
    );
    let metrics = Metrics::default();
    let recorder = sluice_recorder::RecorderBackends {
        log: log.clone(),
        ledger,
        metrics: metrics.recorder.clone(),
    };
    // Boxed: the recorder's future is deep enough to strain type layout.
    let recorder = Box::pin(sluice_recorder::run(
        listeners.recorder,
        cfg.recorder,
        recorder,
        token.clone(),
    ));
    roles.spawn("recorder", recorder);
    let control = sluice_control::ControlBackends {
        store,
        metrics: metrics.control.clone(),
    };
    roles.spawn(
        "control",
        sluice_control::run(listeners.control, cfg.control, control, token.clone()),
    );
    // Ingest and the sender take their configuration from control (seeded
    // from this file where control lacks it).
    let nodes = (&mut cfg.ingest, &mut cfg.sender);
    follow::follow_control(nodes, endpoints.control, generated.clone()).await?;
    // One process is the only node of its pools: it takes every IP lease
    // in process (docs/leases.md).
    let sender = sluice_sender::SenderBackends {
        log: log.clone(),
        telemetry: sluice_sender::Telemetry {
            exposition: Some(metrics.exposition()),
            metrics: metrics.sender.clone(),
            ..Default::default()
        },
        leases: sluice_sender::LocalLeases::default().into(),
    };
    let stats = sender.telemetry.stats.clone();
    roles.spawn(
        "sender",
        sluice_sender::run(listeners.sender, cfg.sender, sender, token.clone()),
    );
    let ingest = sluice_ingest::IngestBackends {
        log: log.clone(),
        suppressions,
        idempotency,
        // One node: it keeps whole tenant quotas.
        heartbeat: None,
        metrics: metrics.ingest.clone(),
    };
    let inbound_listeners = sluice_inbound::InboundListeners {
        smtp: listeners.inbound,
        http: listeners.inbound_http,
        // Served with every role's on the sender's endpoint.
        metrics: None,
    };
    let inbound = sluice_inbound::run(
        inbound_listeners,
        inbound_config,
        log.clone(),
        metrics.inbound.clone(),
        token.clone(),
    );
    roles.spawn("inbound", inbound);
    match generated {
        Some(token_file) => {
            let events_topic = cfg.ingest.kafka.events_topic.clone();
            let config = webhooks_config(cfg.webhooks, &endpoints, token_file, events_topic);
            let listeners = sluice_webhooks::WebhooksListeners { metrics: None };
            let (log, metrics) = (log.clone(), metrics.webhooks.clone());
            let webhooks = sluice_webhooks::run(listeners, config, log, metrics, token.clone());
            roles.spawn("webhooks", webhooks);
        }
        None => tracing::info!(
            "the config names control credentials of its own: dev runs no webhook dispatcher"
        ),
    }
    roles.spawn(
        "ingest",
        sluice_ingest::run(listeners.ingest, cfg.ingest, ingest, token),
    );
    Ok(Running {
        endpoints,
        log,
        stats,
        roles,
    })
}

/// The dispatcher's file configuration pointed at this process: its
/// control and Query (with dev's own token) and ingest's events topic.
fn webhooks_config(
    mut config: sluice_webhooks::WebhooksConfig,
    endpoints: &Endpoints,
    token_file: std::path::PathBuf,
    events_topic: String,
) -> sluice_webhooks::WebhooksConfig {
    config.control.addr = format!("http://{}", endpoints.control);
    config.control.token_file = Some(token_file.clone());
    // Late reports take their tenant from this process's Query.
    config.query_addr = Some(format!("http://{}", endpoints.query));
    config.query_token_file = Some(token_file);
    config.events_topic = events_topic;
    config
}

/// Every role's metrics, served together on the sender's endpoint
/// (`sender.metrics.listen`).
#[derive(Default)]
struct Metrics {
    ingest: Arc<sluice_ingest::metrics::IngestMetrics>,
    sender: Arc<sluice_sender::metrics::SenderMetrics>,
    recorder: Arc<sluice_recorder::Metrics>,
    control: Arc<sluice_control::metrics::ControlMetrics>,
    inbound: Arc<sluice_inbound::metrics::InboundMetrics>,
    webhooks: Arc<sluice_webhooks::WebhookMetrics>,
}

impl Metrics {
    fn exposition(&self) -> sluice_node::metrics::Render {
        let (ingest, sender) = (self.ingest.clone(), self.sender.clone());
        let (recorder, control) = (self.recorder.clone(), self.control.clone());
        let (inbound, webhooks) = (self.inbound.clone(), self.webhooks.clone());
        sluice_node::metrics::combine(vec![
            Arc::new(move || ingest.render()),
            Arc::new(move || sender.render()),
            Arc::new(move || recorder.render()),
            Arc::new(move || control.render()),
            Arc::new(move || inbound.render()),
            Arc::new(move || webhooks.render()),
        ])
    }
}

type BackEnds = (Log, Arc<AnyLedger>, Arc<dyn sluice_control::ConfigStore>);

async fn open_back_ends(
    dir: &Path,
    recorder: &sluice_recorder::RecorderConfig,
) -> anyhow::Result<BackEnds> {
    let (log_dir, ledger_dir, control_dir) =
        (dir.join("log"), dir.join("ledger"), dir.join("control"));
    let (status_ttl, dedup_ttl) = (recorder.status_ttl_days(), recorder.dedup_ttl_days());
    tokio::task::spawn_blocking(move || -> anyhow::Result<BackEnds> {
        let log = EmbeddedLog::open(&log_dir)?;
        std::fs::create_dir_all(&ledger_dir)?;
        let ledger = EmbeddedLedger::open(&ledger_dir, status_ttl, dedup_ttl)?;
        let records = sluice_control::open_embedded(&control_dir)?;
        let ledger = Arc::new(ledger.into());
        // One suppression list: control's are the ledger's.
        let control = store::DevStore::shared(records, Arc::clone(&ledger));
        Ok((log.into(), ledger, control))
    })
    .await?
}

impl Running {
    /// The embedded message log the services share.
    pub fn log(&self) -> Log {
        self.log.clone()
    }

    /// The sender's live counters.
    pub fn sender_stats(&self) -> Arc<Mutex<sluice_sender::Stats>> {
        self.stats.clone()
    }

    /// Resolves when a role stops on its own (an error, or a bug): the
    /// caller should then [`Running::stop`] the rest.
    pub async fn failed(&mut self) -> Task {
        match self.roles.ended().await {
            Some(Ok(task)) => task,
            Some(Err(join)) => ("a role", Err(anyhow::anyhow!("task failed: {join}"))),
            None => ("every role", Ok(())),
        }
    }

    /// Stops every role (ingest stops accepting, the sender drains, the
    /// recorder writes what it read) and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for outcome in self.roles.stop().await {
            let (name, result) = outcome
                .unwrap_or_else(|join| ("a role", Err(anyhow::anyhow!("task failed: {join}"))));
            if let Err(err) = result {
                tracing::error!(role = name, error = %err, "stopped with an error");
                first_error.get_or_insert(err.context(format!("{name} failed")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
