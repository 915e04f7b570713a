//! Running one service role until SIGINT or SIGTERM, then draining it.

use std::process::ExitCode;

use crate::cli;

/// `sluice migrate`: applies the recorder's versioned schema.
pub async fn migrate(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = sluice_recorder::RecorderConfig::load(args.config.as_deref())?;
    let applied = sluice_recorder::migrate_configured(&config).await?;
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
    let stats = sluice_sender::Sender::new(config)
        .run(shutdown_signal())
        .await?;
    tracing::info!(
        delivered = stats.delivered,
        deferred = stats.deferred,
        bounced = stats.bounced,
        expired = stats.expired,
        "sender stopped cleanly"
    );
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
