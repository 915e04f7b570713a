//! Running one service role until SIGINT or SIGTERM, then draining it.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli;

/// `sluice migrate`: applies every versioned CQL migration (`sluice-cql`)
/// to the keyspace of the recorder's config; nothing for an embedded ledger.
pub async fn migrate(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = sluice_recorder::RecorderConfig::load(args.config.as_deref())?;
    let mut applied = Vec::new();
    if config.ledger == sluice_recorder::LedgerKind::Cassandra {
        let session = sluice_cql::connect(&config.cql()).await?;
        applied = sluice_cql::migrate(&session, &config.keyspace, &config.replication).await?;
    }
    if applied.is_empty() {
        println!("keyspace {}: schema already current", config.keyspace);
    } else {
        println!(
            "keyspace {}: applied schema versions {applied:?}",
            config.keyspace
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `sluice recorder`: runs the recorder and its Query service until SIGINT or SIGTERM.
pub async fn recorder(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    use sluice_recorder::{RecorderBackends, RecorderError, RecorderListeners};
    let config = sluice_recorder::RecorderConfig::load(args.config.as_deref())?;
    let listeners = RecorderListeners::bind(&config).await?;
    tracing::info!(addr = %config.query_listen, "Query service listening");
    let shutdown = sluice_node::shutdown_on_signals();
    let backends = match RecorderBackends::open(&config, &shutdown).await {
        Err(RecorderError::ShuttingDown) => return Ok(ExitCode::SUCCESS),
        opened => opened?,
    };
    sluice_recorder::run(listeners, config, backends, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `sluice inbound`: runs the bounce MX until SIGINT or SIGTERM.
pub async fn inbound(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = sluice_inbound::InboundConfig::load(args.config.as_deref())?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on listen = {}", config.listen))?;
    let kafka = sluice_log::KafkaConfig::new(config.brokers.clone(), "sluice-inbound");
    let log: sluice_log::Log = sluice_log::KafkaLog::connect(kafka).await?.into();
    let http = match config.http.listen.as_str() {
        "" => None,
        addr => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on http.listen = {addr}"))?,
        ),
    };
    let listeners = sluice_inbound::InboundListeners {
        smtp: listener,
        metrics: config.metrics.bind().await?,
        http,
    };
    let shutdown = sluice_node::shutdown_on_signals();
    let metrics = std::sync::Arc::default();
    sluice_inbound::run(listeners, config, log, metrics, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `sluice webhooks`: runs a webhook dispatcher until SIGINT or SIGTERM.
pub async fn webhooks(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = sluice_webhooks::WebhooksConfig::load(args.config.as_deref())?;
    let kafka = sluice_log::KafkaConfig::new(config.brokers.clone(), "sluice-webhooks");
    let log: sluice_log::Log = sluice_log::KafkaLog::connect(kafka).await?.into();
    let listeners = sluice_webhooks::WebhooksListeners {
        metrics: config.metrics.bind().await?,
    };
    let shutdown = sluice_node::shutdown_on_signals();
    let metrics = std::sync::Arc::default();
    sluice_webhooks::run(listeners, config, log, metrics, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `sluice ingest`: runs the ingest node until SIGINT or SIGTERM, then drains.
pub async fn ingest(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = sluice_ingest::IngestConfig::load(args.config.as_deref())?;
    let mut listeners = sluice_ingest::IngestListeners::bind(&config.listen).await?;
    listeners.metrics = config.metrics.bind().await?;
    tracing::info!(listen = ?config.listen, "ingest listening");
    let backends = sluice_ingest::IngestBackends::open(&config)?;
    let shutdown = sluice_node::shutdown_on_signals();
    sluice_ingest::run(listeners, config, backends, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `sluice sender`: delivers a pool's mail until SIGINT or SIGTERM, then
/// drains (deliveries in progress finish, fates are published, offsets
/// committed).
pub async fn sender(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = sluice_sender::SenderConfig::load(args.config.as_deref())?;
    let listeners = sluice_sender::SenderListeners::bind(&config).await?;
    if let Some(addr) = config.metrics.listen {
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
    }
    let backends = sluice_sender::SenderBackends::open(&config).await?;
    let stats = backends.telemetry.stats.clone();
    let shutdown = sluice_node::shutdown_on_signals();
    sluice_sender::run(listeners, config, backends, shutdown).await?;
    let stats = stats.lock().map(|s| s.clone()).unwrap_or_default();
    tracing::info!(
        delivered = stats.delivered,
        deferred = stats.deferred,
        bounced = stats.bounced,
        expired = stats.expired,
        "sender stopped cleanly"
    );
    Ok(ExitCode::SUCCESS)
}

/// `sluice control`: serves the configuration until SIGINT or SIGTERM.
pub async fn control(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    let config: sluice_control::ControlConfig = sluice_node::config::load(args.config.as_deref())?;
    let listeners = sluice_control::ControlListeners::bind(&config).await?;
    tracing::info!(addr = %config.listen, "Control service listening");
    let backends = sluice_control::ControlBackends::open(&config).await?;
    let shutdown = sluice_node::shutdown_on_signals();
    sluice_control::run(listeners, config, backends, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `sluice dev`: every role in one process on the embedded back ends.
pub async fn dev(args: cli::DevArgs) -> anyhow::Result<ExitCode> {
    let mut config = crate::dev::DevConfig::load(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let dir = config.data_dir.clone();
    let key_hint = if crate::dev::config::has_dev_key(&config) {
        "API key of tenant `dev`: sluice-dev-key (README: quick start; replace it before other hosts can reach this node). "
    } else {
        ""
    };
    let token_hint = if config.generated_control_token() {
        format!(
            "Admin token of control and Query: in {file} (`export SLUICE_CONTROL_TOKEN=$(cat {file}) \
             SLUICE_QUERY_TOKEN=$(cat {file})`, then `sluice admin pools`, `sluice status <id>`).\n",
            file = config.control_token_file().display()
        )
    } else {
        String::new()
    };
    let mut running = crate::dev::start(config).await?;
    println!(
        "sluice dev is running on the embedded store in {}\n{}\n{key_hint}{token_hint}Ctrl-C stops it.",
        dir.display(),
        running.endpoints
    );
    let shutdown = sluice_node::shutdown_on_signals();
    let early = tokio::select! {
        () = shutdown.cancelled() => None,
        (name, result) = running.failed() => Some((name, result)),
    };
    let stopped = running.stop().await;
    if let Some((name, result)) = early {
        result.map_err(|e| e.context(format!("{name} stopped")))?;
        anyhow::bail!("{name} stopped unexpectedly; the other services were stopped too");
    }
    stopped?;
    Ok(ExitCode::SUCCESS)
}
