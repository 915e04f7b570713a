//! Sluice beside Postfix, in one run (issue #14 item 2): the same relay
//! load through each into one Postfix `smtp-sink`, alternating, and a
//! table of what the sink received.
//!
//! Method, per size: each round runs Postfix (unsigned), then `sluice dev`
//! without DKIM, then `sluice dev` signing every message with RSA-2048.
//! Every run starts a fresh sink and a fresh relay (empty queue or data
//! directory). Postfix is fed by its own `smtp-source` (distinct
//! recipients, `--sessions` connections); Sluice by `--streams` concurrent
//! gRPC `SendBatch` calls of `--batch` distinct one-recipient raw
//! messages. Both relay to the sink over `--connections` connections.
//! Timed from the first submission: "acks/s" until the last submission
//! was accepted (durable), "delivered/s" until the sink had received every
//! message. CPU is the relay's process tree (for Postfix the master and
//! every daemon it ran; for Sluice the one `sluice dev` process), not the
//! load generator's or the sink's; peak RSS is the tree's resident memory
//! sampled every 100 ms. After each run the sink must hold exactly the
//! messages sent: no loss, no duplicate.
//!
//! Run it with `loadtest/peer.sh`, which installs Postfix and builds
//! `sluice` first.

#[path = "machine.rs"]
mod machine;
#[path = "peer/postfix.rs"]
mod postfix;
#[path = "peer/procs.rs"]
mod procs;
#[path = "peer/sluice.rs"]
mod sluice;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Parser;
use sluice_testkit::smtp_sink as sink;

/// Relays the same load through Postfix and through `sluice dev` into one
/// smtp-sink and prints delivered msg/s, ingest acks/s, CPU and peak RSS.
#[derive(Debug, Parser)]
struct Args {
    /// The `sluice` binary to run (a release build).
    #[arg(long)]
    sluice: PathBuf,
    /// Message sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [10_240, 102_400])]
    sizes: Vec<usize>,
    /// Messages per run, one number per size.
    #[arg(long, value_delimiter = ',', default_values_t = [20_000, 5_000])]
    messages: Vec<usize>,
    /// Rounds per size (each round: Postfix, Sluice, Sluice with DKIM).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Connections from each relay to the sink.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// smtp-source sessions into Postfix.
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    /// Concurrent SendBatch calls into Sluice.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Messages per SendBatch call.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Where runs keep their files (emptied first; must be readable by the
    /// postfix user).
    #[arg(long, default_value = "/var/tmp/sluice-peer-bench")]
    work: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Relay {
    Postfix,
    Sluice,
    SluiceDkim,
}

impl Relay {
    fn name(self) -> &'static str {
        match self {
            Relay::Postfix => "Postfix (unsigned)",
            Relay::Sluice => "Sluice dev, no DKIM",
            Relay::SluiceDkim => "Sluice dev, RSA-2048 DKIM",
        }
    }
}

/// What one run measured.
struct Run {
    relay: Relay,
    size: usize,
    messages: usize,
    acked: Duration,
    delivered: Duration,
    cpu: f64,
    peak_rss: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.messages.len() != args.sizes.len() {
        bail!("--messages needs one number per --sizes entry");
    }
    prepare(&args.work)?;
    println!(
        "peer-bench: {} cores, {}",
        machine::cpus(),
        machine::cpu_model()
    );
    println!(
        "method: per size, {} rounds of Postfix / Sluice / Sluice+DKIM alternating; {} connections \
         to one smtp-sink; Postfix fed by smtp-source ({} sessions), Sluice by {} SendBatch calls \
         of {}; CPU and peak RSS of the relay only",
        args.rounds, args.connections, args.sessions, args.streams, args.batch
    );
    let mut runs = Vec::new();
    for (size, messages) in args.sizes.iter().zip(&args.messages) {
        for round in 1..=args.rounds {
            for relay in [Relay::Postfix, Relay::Sluice, Relay::SluiceDkim] {
                let run = run_one(&args, relay, *size, *messages).await?;
                println!(
                    "size {size} round {round}: {}: {:.0} delivered/s",
                    relay.name(),
                    run.messages as f64 / run.delivered.as_secs_f64()
                );
                runs.push(run);
            }
        }
    }
    print_table(&runs);
    Ok(())
}

fn prepare(work: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

async fn run_one(args: &Args, relay: Relay, size: usize, messages: usize) -> anyhow::Result<Run> {
    let mut sink = sink::Sink::start(&args.work)
        .await
        .map_err(|e| anyhow!(e))?;
    let limit = Duration::from_secs(900);
    let (postfix, sluice) = match relay {
        Relay::Postfix => {
            let p = postfix::Postfix::start(&args.work, sink.port, args.connections).await?;
            (Some(p), None)
        }
        _ => {
            let s = sluice::Sluice::start(&args.sluice, &args.work, sink.port, args.connections)
                .await?;
            (None, Some(s))
        }
    };
    let pid = postfix
        .as_ref()
        .map_or_else(|| sluice.as_ref().map_or(0, |s| s.pid()), |p| p.pid());
    let (cpu_before, rss) = (procs::cpu_seconds(pid), procs::PeakRss::watch(pid));
    let started = Instant::now();
    let domain = if relay == Relay::SluiceDkim {
        sluice::SIGNED
    } else {
        sluice::UNSIGNED
    };
    let feeding = async {
        match (&postfix, &sluice) {
            (Some(p), _) => p.feed(messages, size, args.sessions).await,
            (_, Some(s)) => {
                let load = (messages, size, domain);
                s.feed(load, (args.streams, args.batch)).await
            }
            _ => unreachable!("one relay runs"),
        }
    };
    let (acked, delivered) = tokio::join!(feeding, sink.wait_for(messages as u64, limit));
    let (acked, delivered) = (acked?, delivered.map_err(|e| anyhow!(e))?);
    let cpu = procs::cpu_seconds(pid) - cpu_before;
    let peak_rss = rss.peak_bytes();
    // Anything sent twice would arrive after the last expected message.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = sink.count().map_err(|e| anyhow!(e))?;
    if received != messages as u64 {
        bail!(
            "{}: the sink received {received} messages for {messages} sent",
            relay.name()
        );
    }
    drop((postfix, sluice, sink));
    Ok(Run {
        relay,
        size,
        messages,
        acked: acked - started,
        delivered: delivered - started,
        cpu,
        peak_rss,
    })
}

fn print_table(runs: &[Run]) {
    println!();
    println!(
        "| size | relay | messages | delivered msg/s | ingest acks/s | CPU (% of one core) | peak RSS | delivered vs Postfix |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for run in runs {
        let rate = |d: Duration| run.messages as f64 / d.as_secs_f64();
        let postfix: Vec<f64> = runs
            .iter()
            .filter(|r| r.relay == Relay::Postfix && r.size == run.size)
            .map(|r| r.messages as f64 / r.delivered.as_secs_f64())
            .collect();
        let postfix_mean = postfix.iter().sum::<f64>() / postfix.len().max(1) as f64;
        println!(
            "| {} KB | {} | {} | {:.0} | {:.0} | {:.0} % | {} MB | {:.2}× |",
            run.size / 1024,
            run.relay.name(),
            run.messages,
            rate(run.delivered),
            rate(run.acked),
            100.0 * run.cpu / run.delivered.as_secs_f64(),
            run.peak_rss / (1 << 20),
            rate(run.delivered) / postfix_mean,
        );
    }
}
