//! `sluice`: one binary for every role of a Sluice cluster.

mod admin;
mod cli;
mod demo;
mod dev;
mod doctor;
#[cfg(test)]
mod examples_tests;
mod logging;
mod query_cli;
mod run;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// jemalloc rather than the system allocator: 12 % more signed mail per
/// CPU-second here, at about the same peak memory (docs/decisions.md, "The
/// allocator: jemalloc").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporter's channel lives on the runtime.
    let _exporting = match runtime.block_on(async { logging::init(&cli) }) {
        Ok(exporting) => exporting,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let code = match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    };
    // Every role has drained by now. A measurement still waiting on a
    // broker in a blocking thread (consumer lag) must not hold the exit: a
    // node that said it stopped is gone within a second.
    drop(_exporting);
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Doctor(args) => doctor::run(args).await,
        Command::HashSecret(args) => hash_secret(args),
        Command::Migrate(args) => run::migrate(args).await,
        Command::Recorder(args) => run::recorder(args).await,
        Command::Ingest(args) => run::ingest(args).await,
        Command::Sender(args) => run::sender(args).await,
        Command::Dev(args) => run::dev(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Control(args) => run::control(args).await,
        Command::Inbound(args) => run::inbound(args).await,
        Command::Webhooks(args) => run::webhooks(args).await,
        Command::Admin(args) => {
            let (token, tls) = (args.token.as_deref(), args.tls.config());
            admin::run_admin((&args.endpoint, token, &tls), args.command, args.json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            let q = &args.query;
            let at = &q.remote();
            printed(query_cli::status(at, &args.message_id, q.json).await)
        }
        Command::Stats(args) => {
            let from = args.from.unwrap_or_else(sluice_recorder::client::today);
            let to = args.to.unwrap_or_else(|| from.clone());
            let (q, days) = (&args.query, (from.as_str(), to.as_str()));
            let at = &q.remote();
            let out = query_cli::stats(at, &args.by, &args.key, days, q.json);
            printed(out.await)
        }
        Command::Reputation(args) => {
            let (ip, site) = (args.ip.unwrap_or_default(), args.site.unwrap_or_default());
            let q = &args.query;
            let at = &q.remote();
            printed(query_cli::reputation(at, &ip, &site, q.json).await)
        }
    }
}

/// `sluice hash-secret`: one line from standard input → its stored hash.
fn hash_secret(args: cli::HashSecretArgs) -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let secret = line.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        anyhow::bail!(
            "no secret on standard input: pipe it in, e.g. `printf %s 'secret' | sluice hash-secret`"
        );
    }
    let stored = if args.password {
        sluice_ingest::hash_password(secret)
    } else {
        sluice_ingest::hash_secret(secret)
    };
    println!("{stored}");
    Ok(ExitCode::SUCCESS)
}

/// Prints a Query answer (table or JSON).
fn printed(out: Result<String, sluice_recorder::RecorderError>) -> anyhow::Result<ExitCode> {
    println!("{}", out?);
    Ok(ExitCode::SUCCESS)
}
