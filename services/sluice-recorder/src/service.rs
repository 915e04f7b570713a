//! `run`: the recorder node — the consumer loop, the reputation scorer and
//! the Query gRPC server — until shutdown, on either ledger back end.

use std::sync::Arc;
use std::time::Duration;

use sluice_log::{KafkaLog, Log};
use sluice_node::CancellationToken;
use tokio::net::TcpListener;

use crate::auth::{QueryAuth, TenantKeys};
use crate::config::LedgerKind;
use crate::ledger::AnyLedger;
use crate::ledger_cql::CqlLedger;
use crate::ledger_embedded::EmbeddedLedger;
use crate::metrics::Metrics;
use crate::query::QueryService;
use crate::scoring::Dirty;
use crate::writer::Writer;
use crate::{RecorderConfig, RecorderError};

/// The recorder's listener.
#[derive(Debug)]
pub struct RecorderListeners {
    /// gRPC `sluice.v1.Query`.
    pub query: TcpListener,
    /// `GET /metrics` (docs/metrics.md); `None`: no endpoint.
    pub metrics: Option<TcpListener>,
}

impl RecorderListeners {
    /// Binds `config.query_listen` (for `sluice recorder`).
    pub async fn bind(config: &RecorderConfig) -> Result<Self, RecorderError> {
        let query = sluice_node::bind("query_listen", &config.query_listen)
            .await
            .map_err(|e| RecorderError::Config(e.to_string()))?;
        let metrics = config
            .metrics
            .bind()
            .await
            .map_err(|e| RecorderError::Config(e.to_string()))?;
        Ok(Self { query, metrics })
    }
}

/// What a recorder runs on and reports to.
#[derive(Clone)]
pub struct RecorderBackends {
    /// The message log the events are read from.
    pub log: Log,
    /// Where events, counters, suppressions and reputation are written.
    pub ledger: Arc<AnyLedger>,
    /// Counters of the work done (batches, duplicates, retries).
    pub metrics: Arc<Metrics>,
}

impl RecorderBackends {
    /// Opens what `config` names: Kafka at `brokers` (connecting when it
    /// can: the recorder may start first), and the ledger — the embedded one
    /// at once, the Cassandra one with retries until it answers or
    /// `shutdown` is cancelled ([`RecorderError::ShuttingDown`]).
    pub async fn open(
        config: &RecorderConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, RecorderError> {
        config.validated()?;
        let log: Log = KafkaLog::lazy(config.kafka())
            .map_err(|e| RecorderError::Log(Box::new(e)))?
            .into();
        let ledger = Arc::new(open_ledger(config, shutdown).await?);
        Ok(Self {
            log,
            ledger,
            metrics: Arc::default(),
        })
    }
}

/// Connects to Cassandra and prepares the statements, retrying with backoff
/// while it is unreachable (the recorder may start before it), until `stop`.
pub(crate) async fn open_cql_ledger(
    config: &RecorderConfig,
    stop: &CancellationToken,
) -> Result<CqlLedger, RecorderError> {
    let mut delay: Duration = config.retry_initial.into();
    loop {
        let attempt = async {
            let session = sluice_cql::connect(&config.cql()).await?;
            CqlLedger::prepare(
                session,
                &config.keyspace,
                config.status_ttl_days(),
                config.dedup_ttl_days(),
            )
            .await
        };
        match attempt.await {
            Ok(ledger) => return Ok(ledger.with_concurrency(config.write_concurrency)),
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "cannot open the ledger yet")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return Err(RecorderError::ShuttingDown),
        }
        delay = (delay * 2).min(config.retry_max.into());
    }
}

/// Opens the ledger `config.ledger` names: the embedded one at once, the
/// Cassandra one with retries until `stop`.
async fn open_ledger(
    config: &RecorderConfig,
    stop: &CancellationToken,
) -> Result<AnyLedger, RecorderError> {
    match config.ledger {
        LedgerKind::Cassandra => Ok(open_cql_ledger(config, stop).await?.into()),
        LedgerKind::Embedded => {
            sluice_node::secret::private_dir(&config.data_dir).map_err(|e| {
                let dir = config.data_dir.display();
                RecorderError::Config(format!("data_dir: cannot create {dir}: {e}"))
            })?;
            let dir = config.data_dir.clone();
            let (status, dedup) = (config.status_ttl_days(), config.dedup_ttl_days());
            let open = move || EmbeddedLedger::open(&dir, status, dedup);
            let ledger = tokio::task::spawn_blocking(open)
                .await
                .map_err(|e| RecorderError::embedded("opening", e))??;
            Ok(ledger.into())
        }
    }
}

/// Runs a recorder node: consumes `config.topic` from `backends.log` into
/// `backends.ledger`, scores reputation, and serves `sluice.v1.Query` on
/// `listeners.query`, until `shutdown` is cancelled. The batch being written
/// then is finished and committed first, within `config.drain_timeout`.
pub async fn run(
    listeners: RecorderListeners,
    config: RecorderConfig,
    backends: RecorderBackends,
    shutdown: CancellationToken,
) -> Result<(), RecorderError> {
    config.validated()?;
    let drain = config.drain_timeout.into();
    let work = serve(listeners, &config, backends, shutdown.clone());
    match sluice_node::drain_within("recorder", &shutdown, drain, work).await {
        Err(RecorderError::ShuttingDown) => Ok(()),
        other => other,
    }
}

async fn serve(
    listeners: RecorderListeners,
    config: &RecorderConfig,
    backends: RecorderBackends,
    stop: CancellationToken,
) -> Result<(), RecorderError> {
    let RecorderBackends {
        log,
        ledger: store,
        metrics,
    } = backends;
    let exposition = serve_metrics(listeners.metrics, config, &metrics, &store, &stop)?;
    let listener = listeners.query;
    let gate = sluice_node::gate::Gate::new(
        config.query_max_connections,
        config.query_max_connections_per_ip,
    );
    let unauthenticated = config.credentials.is_empty();
    let incoming = sluice_node::listen::open_for(
        listener,
        "query_listen",
        &config.tls,
        gate,
        sluice_node::listen::GRPC,
        unauthenticated,
    )
    .map_err(|err| RecorderError::Config(err.0))?;
    let auth = Arc::new(QueryAuth::from_config(config)?);
    let following = follow_tenants(config, &auth, &stop).await?;
    let dirty = Dirty::default();
    let writer = Writer {
        ledger: store.clone(),
        concurrency: config.write_concurrency,
        retry_initial: config.retry_initial.into(),
        retry_max: config.retry_max.into(),
        metrics,
        stop: stop.clone(),
        parts: Default::default(),
    };
    let health = sluice_node::health::service(&["sluice.v1.Query"], stop.clone()).await;
    let reflection = sluice_node::health::reflection(&[sluice_proto::FILE_DESCRIPTOR_SET]);
    let shed =
        sluice_node::shed::Shed::new(config.query_max_requests, sluice_node::shed::Protocol::Grpc);
    let deadline =
        sluice_node::deadline::BodyDeadline::new(sluice_node::deadline::BODY_TIMEOUT, &[]);
    let server = tonic::transport::Server::builder()
        .layer(shed)
        .layer(deadline)
        .add_service(health)
        .add_service(reflection)
        .add_service(QueryService::server(store.clone(), auth.clone()))
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
    let consume = crate::consumer::run(&log, config, &writer, &dirty, stop.clone());
    let score = async {
        crate::scoring::run(&store, &config.reputation, &dirty, stop.clone()).await;
        Ok::<(), RecorderError>(())
    };
    let deliveries = crate::webhook_log::run(&log, config, &store, stop.clone());
    tokio::try_join!(
        async { server.await.map_err(RecorderError::from) },
        consume,
        deliveries,
        score,
        apply_tenants(following, auth),
        exposition,
    )?;
    Ok(())
}

/// Serves the recorder's metrics on `listener` (when bound) until `stop`.
fn serve_metrics(
    listener: Option<TcpListener>,
    config: &RecorderConfig,
    metrics: &Arc<Metrics>,
    ledger: &Arc<AnyLedger>,
    stop: &CancellationToken,
) -> Result<impl std::future::Future<Output = Result<(), RecorderError>> + use<>, RecorderError> {
    let metrics = metrics.clone();
    let render: sluice_node::metrics::Render = Arc::new(move || metrics.render());
    let ready = ledger_answers(ledger.clone());
    let (section, tls) = (&config.metrics, &config.tls);
    let serve = sluice_node::metrics::serve_optional(listener, section, tls, render, ready, stop)
        .map_err(|(field, reason)| RecorderError::Config(format!("{field}: {reason}")))?;
    Ok(async move {
        serve
            .await
            .map_err(|e| RecorderError::Config(format!("metrics.listen: {e}")))
    })
}

/// Ready while the ledger answers a one-row read within 2 s.
fn ledger_answers(ledger: Arc<AnyLedger>) -> sluice_node::probes::Check {
    use crate::ledger::Ledger;
    Arc::new(move || {
        let ledger = ledger.clone();
        Box::pin(async move {
            let read = ledger.history("readiness-probe");
            match tokio::time::timeout(std::time::Duration::from_secs(2), read).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(format!("the ledger does not answer: {err}")),
                Err(_) => Err("the ledger did not answer within 2 s".into()),
            }
        })
    })
}

type Following = tokio::sync::watch::Receiver<Arc<sluice_control_client::ClusterConfig>>;

/// With `control.addr` set: waits for control's snapshot and puts its
/// tenants' API keys in force; the receiver then brings every change.
async fn follow_tenants(
    config: &RecorderConfig,
    auth: &QueryAuth,
    stop: &CancellationToken,
) -> Result<Option<Following>, RecorderError> {
    if !config.control.enabled() {
        return Ok(None);
    }
    let rx = sluice_control_client::follow(&config.control, &config.tls, "recorder", stop.clone())
        .await
        .map_err(|err| RecorderError::Config(format!("control: {err}")))?;
    auth.set_tenants(TenantKeys::from_cluster(&rx.borrow()));
    Ok(Some(rx))
}

/// Applies the tenants' API keys of every configuration control publishes
/// until the stream ends.
async fn apply_tenants(
    following: Option<Following>,
    auth: Arc<QueryAuth>,
) -> Result<(), RecorderError> {
    let Some(mut rx) = following else {
        return Ok(());
    };
    while rx.changed().await.is_ok() {
        let cluster = rx.borrow_and_update().clone();
        auth.set_tenants(TenantKeys::from_cluster(&cluster));
        tracing::debug!(
            revision = cluster.revision,
            "tenants' API keys from control applied"
        );
    }
    Ok(())
}
