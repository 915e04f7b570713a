//! `sluice dev`: ingest, sender, recorder and control in one process, on the
//! embedded message log, ledger and control store in one data directory.
//! The same service code runs here as on Kafka and ScyllaDB; only the back
//! ends handed to each service's `run_on` differ.

pub mod config;
mod suppressions;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sluice_log::EmbeddedLog;
use sluice_log::Log;
use sluice_recorder::{AnyLedger, EmbeddedLedger};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

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
    stop: watch::Sender<bool>,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

/// A service that must keep running.
type Task = (&'static str, anyhow::Result<()>);

async fn bind(what: &str, addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("{what}: cannot listen on {addr} (in use? set another address in the dev config)")
    })
}

/// Opens the back ends in `cfg.data_dir` and starts every service.
pub async fn start(mut cfg: DevConfig) -> anyhow::Result<Running> {
    cfg.check_exposure()?;
    let dir = cfg.data_dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    cfg.secret()?;
    let (log, ledger, control) = open_back_ends(&dir, &cfg.recorder).await?;

    let control_listener = bind("control.listen", &cfg.control_listen).await?;
    let query_listener = bind("recorder.query_listen", &cfg.recorder.query_listen).await?;
    let listeners = sluice_ingest::IngestListeners::bind(&cfg.ingest.listen).await?;
    let metrics_listener = match cfg.sender.metrics.listen {
        Some(addr) => Some(bind("sender.metrics.listen", &addr.to_string()).await?),
        None => None,
    };
    let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let endpoints = Endpoints {
        ingest_grpc: local(&listeners.grpc).context("ingest.listen.grpc must be set in dev")?,
        ingest_http: local(&listeners.http).context("ingest.listen.http must be set in dev")?,
        smtp_submission: local(&listeners.smtp_submission),
        query: query_listener.local_addr()?,
        control: control_listener.local_addr()?,
        metrics: local(&metrics_listener),
    };
    // The sender follows this node's reputation and keeps its counters here.
    cfg.sender
        .reputation
        .query_addr
        .get_or_insert_with(|| format!("http://{}", endpoints.query));
    cfg.sender
        .state
        .file
        .get_or_insert_with(|| dir.join("sender-state.json"));

    let (stop, stopped) = watch::channel(false);
    let until = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut tasks: JoinSet<Task> = JoinSet::new();
    // Ingest checks every submission against the ledger's suppressions.
    let suppressions = sluice_ingest::Suppressions::in_process(Arc::new(
        suppressions::LedgerSuppressions(ledger.clone()),
    ));
    let recorder_log = log.clone();
    let recorder_cfg = cfg.recorder.clone();
    let metrics = Arc::new(sluice_recorder::Metrics::default());
    let recorder_stop = until();
    // Boxed: the recorder's future is deep enough to strain type layout.
    let recorder = Box::pin(sluice_recorder::run_on(
        query_listener,
        recorder_cfg,
        ledger,
        recorder_log,
        recorder_stop,
        metrics,
    ));
    tasks.spawn(named("recorder", recorder));
    tasks.spawn(named(
        "control",
        sluice_control::run(control_listener, control, until()),
    ));
    let sender = sluice_sender::Sender::new(cfg.sender.clone());
    let stats = sender.stats();
    if let Some(listener) = metrics_listener {
        let metrics = sender.metrics();
        tasks.spawn(named(
            "metrics",
            sluice_sender::metrics::serve(listener, metrics, until()),
        ));
    }
    let sender_log = log.clone();
    let sender_stop = until();
    tasks.spawn(named("sender", async move {
        sender.run_on(sender_log, sender_stop).await.map(|_| ())
    }));
    let ingest_log = log.clone();
    let ingest_cfg = cfg.ingest.clone();
    let ingest_stop = until();
    tasks.spawn(named("ingest", async move {
        sluice_ingest::run_on(listeners, ingest_cfg, ingest_log, suppressions, ingest_stop).await
    }));
    Ok(Running {
        endpoints,
        log,
        stats,
        stop,
        tasks,
    })
}

/// Runs `work` and labels its outcome with the service's name.
async fn named<E: Into<anyhow::Error>>(
    name: &'static str,
    work: impl Future<Output = Result<(), E>>,
) -> Task {
    (name, work.await.map_err(Into::into))
}

type BackEnds = (Log, Arc<AnyLedger>, Arc<dyn sluice_control::ConfigStore>);

async fn open_back_ends(
    dir: &Path,
    recorder: &sluice_recorder::RecorderConfig,
) -> anyhow::Result<BackEnds> {
    let (log_dir, ledger_dir, control_dir) =
        (dir.join("log"), dir.join("ledger"), dir.join("control"));
    let (status_ttl, dedup_ttl) = (recorder.status_ttl_days, recorder.dedup_ttl_days);
    tokio::task::spawn_blocking(move || -> anyhow::Result<BackEnds> {
        let log = EmbeddedLog::open(&log_dir)?;
        std::fs::create_dir_all(&ledger_dir)?;
        let ledger = EmbeddedLedger::open(&ledger_dir, status_ttl, dedup_ttl)?;
        let control = sluice_control::open_embedded(&control_dir)?;
        Ok((log.into(), Arc::new(ledger.into()), control))
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

    /// Resolves when a service stops on its own (an error, or a bug): the
    /// caller should then [`Running::stop`] the rest.
    pub async fn failed(&mut self) -> Task {
        match self.tasks.join_next().await {
            Some(Ok(task)) => task,
            Some(Err(join)) => ("a service", Err(anyhow::anyhow!("task failed: {join}"))),
            None => ("every service", Ok(())),
        }
    }

    /// Stops every service (ingest stops accepting, the sender drains, the
    /// recorder writes what it read) and waits for them.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let (name, result) = match joined {
                Ok(task) => task,
                Err(join) => ("a service", Err(anyhow::anyhow!("task failed: {join}"))),
            };
            if let Err(err) = result {
                tracing::error!(service = name, error = %err, "stopped with an error");
                first_error.get_or_insert(err.context(format!("{name} failed")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
