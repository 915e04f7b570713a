//! `run`: the recorder node — the consumer loop, the reputation scorer and
//! the Query gRPC server — until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1::query_server::QueryServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::query::QueryService;
use crate::scoring::Dirty;
use crate::store::Store;
use crate::writer::Writer;
use crate::{RecorderConfig, RecorderError};

/// Connects to Cassandra and prepares the statements, retrying with backoff
/// while it is unreachable (the recorder may start before it), until `stop`.
pub(crate) async fn open_store(
    config: &RecorderConfig,
    stop: &watch::Receiver<bool>,
) -> Result<Store, RecorderError> {
    let mut delay = Duration::from_millis(config.retry_initial_ms);
    loop {
        let attempt = async {
            let session = sluice_ledger::connect(&config.ledger()).await?;
            Store::prepare(
                session,
                &config.keyspace,
                config.status_ttl_days,
                config.dedup_ttl_days,
            )
            .await
        };
        match attempt.await {
            Ok(store) => return Ok(store),
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

/// [`run`] with the caller's [`Metrics`], to watch the recorder work.
pub async fn run_with(
    listener: TcpListener,
    config: RecorderConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics: Arc<Metrics>,
) -> Result<(), RecorderError> {
    config.validate()?;
    let (stop_tx, stop) = watch::channel(false);
    let trigger = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let result = serve(listener, &config, stop, metrics).await;
    trigger.abort();
    match result {
        Err(RecorderError::ShuttingDown) => Ok(()),
        other => other,
    }
}

async fn serve(
    listener: TcpListener,
    config: &RecorderConfig,
    stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) -> Result<(), RecorderError> {
    let store = Arc::new(open_store(config, &stop).await?);
    let dirty = Dirty::default();
    let writer = Writer {
        store: store.clone(),
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
    let consume = crate::consumer::run(config, &writer, &dirty, stop.clone());
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
