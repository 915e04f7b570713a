//! Running one service role until SIGINT or SIGTERM, then draining it.

use std::process::ExitCode;

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
    let config = sluice_recorder::RecorderConfig::load(args.config.as_deref())?;
    let listener = tokio::net::TcpListener::bind(&config.query_listen)
        .await
        .map_err(|e| anyhow::anyhow!("query_listen {}: cannot bind: {e}", config.query_listen))?;
    tracing::info!(addr = %config.query_listen, "Query service listening");
    let shutdown = shutdown_signal();
    sluice_recorder::run(listener, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `sluice ingest`: runs the ingest node until SIGINT or SIGTERM, then drains.
pub async fn ingest(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = sluice_ingest::IngestConfig::load(args.config.as_deref())?;
    let listeners = sluice_ingest::IngestListeners::bind(&config.listen).await?;
    tracing::info!(listen = ?config.listen, "ingest listening");
    let shutdown = shutdown_signal();
    sluice_ingest::run(listeners, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `sluice sender`: delivers a pool's mail until SIGINT or SIGTERM, then
/// drains (deliveries in progress finish, fates are published, offsets
/// committed).
pub async fn sender(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = sluice_sender::SenderConfig::load(args.config.as_deref())?;
    let sender = sluice_sender::Sender::new(config.clone());
    if let Some(addr) = config.metrics.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("metrics.listen {addr}: cannot bind: {e}"))?;
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
        tokio::spawn(sluice_sender::metrics::serve(
            listener,
            sender.metrics(),
            std::future::pending(),
        ));
    }
    let stats = sender.run(shutdown_signal()).await?;
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
pub async fn control(args: cli::ControlArgs) -> anyhow::Result<ExitCode> {
    let store = match &args.data_dir {
        Some(dir) => sluice_control::open_embedded(dir)?,
        None => {
            let mut cql = sluice_cql::CqlConfig::from_env();
            cql.contact_points = args.cassandra.clone();
            sluice_control::open_cql(&cql, &args.keyspace).await?
        }
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: cannot bind: {e}", args.listen))?;
    tracing::info!(addr = %args.listen, "Control service listening");
    sluice_control::run(listener, store, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `sluice dev`: every role in one process on the embedded back ends.
pub async fn dev(args: cli::DevArgs) -> anyhow::Result<ExitCode> {
    let mut config = crate::dev::DevConfig::load(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let dir = config.data_dir.clone();
    let mut running = crate::dev::start(config).await?;
    println!(
        "sluice dev is running on the embedded store in {}\n{}\nAPI key of tenant `dev`: sluice-dev-key (README: quick start). Ctrl-C stops it.",
        dir.display(),
        running.endpoints
    );
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let early = tokio::select! {
        () = &mut shutdown => None,
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

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C stops this process cleanly");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested: draining");
}
