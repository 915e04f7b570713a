//! `run`: the recorder node — the consumer loop, the reputation scorer and
//! the Query gRPC server — until shutdown, on either ledger back end.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sluice_log::{KafkaLog, Log};
use sluice_proto::v1::query_server::QueryServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::LedgerKind;
use crate::ledger::AnyLedger;
use crate::ledger_cql::CqlLedger;
use crate::ledger_embedded::EmbeddedLedger;
use crate::metrics::Metrics;
use crate::query::QueryService;
use crate::scoring::Dirty;
use crate::writer::Writer;
use crate::{RecorderConfig, RecorderError};

/// Connects to Cassandra and prepares the statements, retrying with backoff
/// while it is unreachable (the recorder may start before it), until `stop`.
pub(crate) async fn open_cql_ledger(
    config: &RecorderConfig,
    stop: &watch::Receiver<bool>,
) -> Result<CqlLedger, RecorderError> {
    let mut delay = Duration::from_millis(config.retry_initial_ms);
    loop {
        let attempt = async {
            let session = sluice_cql::connect(&config.cql()).await?;
            CqlLedger::prepare(
                session,
                &config.keyspace,
                config.status_ttl_days,
                config.dedup_ttl_days,
            )
            .await
        };
        match attempt.await {
            Ok(ledger) => return Ok(ledger),
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "cannot open the ledger yet")
            }
        }
        let mut stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = crate::stopped(&mut stop) => return Err(RecorderError::ShuttingDown),
        }
        delay = (delay * 2).min(Duration::from_millis(config.retry_max_ms));
    }
}

/// Opens the ledger `config.ledger` names: the embedded one at once, the
/// Cassandra one with retries until `stop`.
async fn open_ledger(
    config: &RecorderConfig,
    stop: &watch::Receiver<bool>,
) -> Result<AnyLedger, RecorderError> {
    match config.ledger {
        LedgerKind::Cassandra => Ok(open_cql_ledger(config, stop).await?.into()),
        LedgerKind::Embedded => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                let dir = config.data_dir.display();
                RecorderError::Config(format!("data_dir: cannot create {dir}: {e}"))
            })?;
            let dir = config.data_dir.clone();
            let (status, dedup) = (config.status_ttl_days, config.dedup_ttl_days);
            let open = move || EmbeddedLedger::open(&dir, status, dedup);
            let ledger = tokio::task::spawn_blocking(open)
                .await
                .map_err(|e| RecorderError::embedded("opening", e))??;
            Ok(ledger.into())
        }
    }
}

/// Runs a recorder node: consumes `config.topic`, scores reputation, and
/// serves `sluice.v1.Query` on `listener`, until `shutdown` completes. The
/// batch being written when shutdown comes is finished and committed first.
pub async fn run(
    listener: TcpListener,
    config: RecorderConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RecorderError> {
    run_with(listener, config, shutdown, Arc::new(Metrics::default())).await
}

/// [`run`] with the caller's [`Metrics`], to watch the recorder work. Opens
/// the ledger `config.ledger` names (waiting for Cassandra), then
/// [`run_on`] it.
pub async fn run_with(
    listener: TcpListener,
    config: RecorderConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics: Arc<Metrics>,
) -> Result<(), RecorderError> {
    config.validate()?;
    // The recorder may start before Kafka: the consumer connects when it can.
    let log: Log = KafkaLog::lazy(config.kafka())
        .map_err(|e| RecorderError::Log(Box::new(e)))?
        .into();
    until_shutdown(shutdown, async move |stop| {
        let ledger = Arc::new(open_ledger(&config, &stop).await?);
        serve(listener, &config, ledger, log, stop, metrics).await
    })
    .await
}

/// [`run_with`] on a ledger and a message log the caller already opened
/// (e.g. the embedded ones shared by the services of `sluice dev`);
/// `config`'s ledger and broker fields are not used.
pub async fn run_on(
    listener: TcpListener,
    config: RecorderConfig,
    ledger: Arc<AnyLedger>,
    log: Log,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics: Arc<Metrics>,
) -> Result<(), RecorderError> {
    config.validate()?;
    until_shutdown(shutdown, async move |stop| {
        serve(listener, &config, ledger, log, stop, metrics).await
    })
    .await
}

/// Runs `work` with a stop signal that turns true when `shutdown` completes;
/// a stop is a clean exit.
async fn until_shutdown(
    shutdown: impl Future<Output = ()> + Send + 'static,
    work: impl AsyncFnOnce(watch::Receiver<bool>) -> Result<(), RecorderError>,
) -> Result<(), RecorderError> {
    let (stop_tx, stop) = watch::channel(false);
    let trigger = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let result = work(stop).await;
    trigger.abort();
    match result {
        Err(RecorderError::ShuttingDown) => Ok(()),
        other => other,
    }
}

async fn serve(
    listener: TcpListener,
    config: &RecorderConfig,
    store: Arc<AnyLedger>,
    log: Log,
    stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) -> Result<(), RecorderError> {
    let dirty = Dirty::default();
    let writer = Writer {
        ledger: store.clone(),
        concurrency: config.write_concurrency,
        retry_initial: Duration::from_millis(config.retry_initial_ms),
        retry_max: Duration::from_millis(config.retry_max_ms),
        metrics,
        stop: stop.clone(),
    };
    let mut server_stop = stop.clone();
    let server = tonic::transport::Server::builder()
        .add_service(QueryServer::new(QueryService::new(store.clone())))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async move {
                crate::stopped(&mut server_stop).await;
            },
        );
    let consume = crate::consumer::run(&log, config, &writer, &dirty, stop.clone());
    let score = async {
        crate::scoring::run(&store, &config.reputation, &dirty, stop.clone()).await;
        Ok::<(), RecorderError>(())
    };
    tokio::try_join!(
        async { server.await.map_err(RecorderError::from) },
        consume,
        score
    )?;
    Ok(())
}
