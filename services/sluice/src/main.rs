//! `sluice`: one binary for every role of a Sluice cluster.

mod cli;
mod doctor;
mod placeholder;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Doctor(args) => doctor::run(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Recorder(args) => recorder(args).await,
        Command::Ingest(args) => ingest(args).await,
        Command::Status(args) => {
            let q = &args.query;
            printed(sluice_recorder::client::status(&q.query_addr, &args.message_id, q.json).await)
        }
        Command::Stats(args) => {
            let from = args.from.unwrap_or_else(sluice_recorder::client::today);
            let to = args.to.unwrap_or_else(|| from.clone());
            let (q, days) = (&args.query, (from.as_str(), to.as_str()));
            let out =
                sluice_recorder::client::stats(&q.query_addr, &args.by, &args.key, days, q.json);
            printed(out.await)
        }
        Command::Reputation(args) => {
            let (ip, site) = (args.ip.unwrap_or_default(), args.site.unwrap_or_default());
            let q = &args.query;
            printed(sluice_recorder::client::reputation(&q.query_addr, &ip, &site, q.json).await)
        }
        other => Ok(placeholder::refuse(&other)),
    }
}

/// `sluice migrate`: applies the recorder's versioned schema.
async fn migrate(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
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

/// `sluice recorder`: runs the recorder and its Query service until Ctrl-C.
async fn recorder(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = sluice_recorder::RecorderConfig::load(args.config.as_deref())?;
    let listener = tokio::net::TcpListener::bind(&config.query_listen)
        .await
        .map_err(|e| anyhow::anyhow!("query_listen {}: cannot bind: {e}", config.query_listen))?;
    tracing::info!(addr = %config.query_listen, "Query service listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    sluice_recorder::run(listener, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `sluice ingest`: runs the ingest node until Ctrl-C, then drains.
async fn ingest(args: cli::ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = sluice_ingest::IngestConfig::load(args.config.as_deref())?;
    let listeners = sluice_ingest::IngestListeners::bind(&config.listen).await?;
    tracing::info!(listen = ?config.listen, "ingest listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    sluice_ingest::run(listeners, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a Query answer (table or JSON).
fn printed(out: Result<String, sluice_recorder::RecorderError>) -> anyhow::Result<ExitCode> {
    println!("{}", out?);
    Ok(ExitCode::SUCCESS)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
