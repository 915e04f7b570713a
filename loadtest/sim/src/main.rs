//! `sluice-sim`: run an ISP simulator scenario until Ctrl-C or SIGTERM.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sluice_sim::{Scenario, Simulator};

/// Simulate mailbox providers (Gmail, Yahoo, Outlook, small domains) with real
/// SMTP servers on loopback addresses, for load and crash tests of Sluice.
#[derive(Debug, Parser)]
#[command(
    name = "sluice-sim",
    version,
    long_about = None,
    after_help = "\
Each [[provider]] of the scenario gets one SMTP listener. Point the sender's
static routes at the addresses printed on start-up, one line per provider:

    listening provider=gmail addr=127.0.0.2:2525

and bind the sender to distinct 127.0.0.x source addresses: limits, counters
and violations are kept per source IP (the peer address of each connection).

The simulator runs until Ctrl-C or SIGTERM, then closes open sessions with
`421 4.3.2`, prints a table (per provider and source IP: connections,
accepted, deferred, rejected, peak messages per minute against the limit,
violations by limit) and writes the JSON report if --report was given. It
exits with status 0 even when violations were counted; read the report.

Providers with a [provider.feedback] table later mail delayed bounces (RFC
3464, to the message's MAIL FROM) and spam complaints (ARF, to the feedback
address) for a share of the recipients they accepted, to --feedback-mx. The
report lists each with the MX's answer.

Example:
    sluice-sim --scenario loadtest/scenarios/five-providers.toml --report /tmp/sim.json

The scenario format is described in docs/simulator.md."
)]
struct Args {
    /// Scenario file (TOML): seed, and one [[provider]] table per simulated provider.
    #[arg(long, value_name = "FILE")]
    scenario: PathBuf,
    /// Write the final report here as JSON (accepted messages with Message-ID,
    /// recipients, source IP and time; counters and violations).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// The sender's inbound MX (host:port), where providers with a
    /// `feedback` table mail their late bounces and complaints. Without it,
    /// that feedback waits and is never sent.
    #[arg(long, value_name = "ADDR")]
    feedback_mx: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let scenario = Scenario::load(&args.scenario)?;
    let sim = Simulator::start(scenario).await?;
    if let Some(mx) = args.feedback_mx {
        sim.send_feedback_to(mx);
    }
    let mut stdout = std::io::stdout();
    for (name, addr) in sim.addrs() {
        writeln!(stdout, "listening provider={name} addr={addr}")?;
    }
    stdout.flush()?;
    wait_for_signal().await?;
    tracing::info!("stopping: closing sessions");
    let report = sim.shutdown().await;
    print!("{report}");
    if let Some(path) = &args.report {
        report.write_json(path)?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
