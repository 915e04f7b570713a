//! Sluice beside Postfix, in one run (issue #14 item 2): the same relay
//! load through each into one Postfix `smtp-sink`, alternating, and a
//! table of what the sink received.
//!
//! Method, per size: each round runs Postfix (unsigned), then Sluice
//! without DKIM, then Sluice signing every message with RSA-2048. Sluice
//! is `sluice dev`, or with `--kafka` separate `sluice ingest` and `sluice
//! sender` processes on that Kafka. Every run starts a fresh sink and a
//! fresh relay (empty queue, data directory or topics). Postfix is fed by
//! its own `smtp-source` (distinct recipients, `--sessions` connections);
//! Sluice by `--streams` concurrent gRPC `SendBatch` calls of `--batch`
//! distinct one-recipient raw messages. Both relay to the sink over
//! `--connections` connections.
//!
//! Each run first relays one warm-up message, untimed; its time to the
//! sink is the "first delivery" column (a sender on Kafka must join its
//! consumer group first). Then, timed from the first submission, "acks/s"
//! runs until the last submission was accepted (durable) and
//! "delivered/s" until the sink has received every message.
//!
//! CPU is the relay's processes and their children (Postfix's master and
//! every daemon it ran; `sluice dev`, or ingest and sender), not the load
//! generator's, the sink's or Kafka's. Peak memory is their proportional
//! set size (shared pages split among the processes sharing them),
//! sampled every 100 ms. After each run the sink must hold exactly the
//! messages sent: no loss, no duplicate. Between runs the disk is synced
//! and left idle for 2 s, so no run pays for the last one's writes.
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
/// smtp-sink and prints delivered msg/s, ingest acks/s, CPU and peak memory (PSS).
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
    /// Which relays run, in this order each round (`postfix`, `sluice`,
    /// `sluice-dkim`); fewer for profiling one of them.
    #[arg(long, value_delimiter = ',', default_values_t = [Relay::Postfix, Relay::Sluice, Relay::SluiceDkim])]
    relays: Vec<Relay>,
    /// Run Sluice as separate `sluice ingest` and `sluice sender` processes
    /// on the Kafka at these brokers (e.g. 127.0.0.1:9092) instead of
    /// `sluice dev`.
    #[arg(long)]
    kafka: Option<String>,
    /// Where runs keep their files (emptied first; must be readable by the
    /// postfix user).
    #[arg(long, default_value = "/var/tmp/sluice-peer-bench")]
    work: PathBuf,
    /// Where the sink appends what it receives (emptied first). Memory
    /// (tmpfs) by default: on disk the sink's own writes took about a
    /// quarter of the machine's CPU, which both relays then lacked.
    #[arg(long, default_value = "/dev/shm/sluice-peer-sink")]
    sink_work: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
enum Relay {
    Postfix,
    Sluice,
    SluiceDkim,
}

impl std::fmt::Display for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        let value = self.to_possible_value().expect("every relay has a name");
        f.write_str(value.get_name())
    }
}

impl Relay {
    fn name(self, kafka: bool) -> &'static str {
        match (self, kafka) {
            (Relay::Postfix, _) => "Postfix (unsigned)",
            (Relay::Sluice, false) => "Sluice dev, no DKIM",
            (Relay::SluiceDkim, false) => "Sluice dev, RSA-2048 DKIM",
            (Relay::Sluice, true) => "Sluice on Kafka, no DKIM",
            (Relay::SluiceDkim, true) => "Sluice on Kafka, RSA-2048 DKIM",
        }
    }
}

/// What one run measured.
struct Run {
    relay: Relay,
    size: usize,
    messages: usize,
    acked: Duration,
    first: Duration,
    delivered: Duration,
    cpu: f64,
    peak_memory: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.messages.len() != args.sizes.len() {
        bail!("--messages needs one number per --sizes entry");
    }
    prepare(&args.work)?;
    prepare(&args.sink_work)?;
    println!(
        "peer-bench: {} cores, {}",
        machine::cpus(),
        machine::cpu_model()
    );
    println!(
        "method: per size, {} rounds of Postfix / Sluice / Sluice+DKIM alternating; {} connections \
         to one smtp-sink; Postfix fed by smtp-source ({} sessions), Sluice by {} SendBatch calls \
         of {}; CPU and peak memory (PSS) of the relay only",
        args.rounds, args.connections, args.sessions, args.streams, args.batch
    );
    let mut runs = Vec::new();
    for (size, messages) in args.sizes.iter().zip(&args.messages) {
        for round in 1..=args.rounds {
            for relay in args.relays.iter().copied() {
                let run = run_one(&args, relay, *size, *messages).await?;
                println!(
                    "size {size} round {round}: {}: {:.0} delivered/s",
                    relay.name(args.kafka.is_some()),
                    run.messages as f64 / run.delivered.as_secs_f64()
                );
                runs.push(run);
            }
        }
    }
    print_table(&runs, args.kafka.is_some());
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
    let mut sink = sink::Sink::start(&args.sink_work)
        .await
        .map_err(|e| anyhow!(e))?;
    let limit = Duration::from_secs(900);
    let (postfix, sluice) = match relay {
        Relay::Postfix => {
            let p = postfix::Postfix::start(&args.work, sink.port, args.connections).await?;
            (Some(p), None)
        }
        _ => {
            let (binary, work, to) = (&args.sluice, &args.work, (sink.port, args.connections));
            let s = match &args.kafka {
                None => sluice::Sluice::start_dev(binary, work, to.0, to.1).await?,
                Some(brokers) => sluice::Sluice::start_kafka(binary, work, brokers, to).await?,
            };
            (None, Some(s))
        }
    };
    let pids = match (&postfix, &sluice) {
        (Some(p), _) => vec![p.pid()],
        (_, Some(s)) => s.pids(),
        _ => unreachable!("one relay runs"),
    };
    let domain = if relay == Relay::SluiceDkim {
        sluice::SIGNED
    } else {
        sluice::UNSIGNED
    };
    let feed = |messages: usize| {
        let (postfix, sluice) = (&postfix, &sluice);
        async move {
            match (postfix, sluice) {
                (Some(p), _) => p.feed(messages, size, args.sessions).await,
                (_, Some(s)) => {
                    let load = (messages, size, domain);
                    s.feed(load, (args.streams, args.batch)).await
                }
                _ => unreachable!("one relay runs"),
            }
        }
    };
    // One message first, untimed: the relay is started and connected (a
    // sender on Kafka has joined its group) before the clock runs.
    let warm_up = Instant::now();
    let (sent, arrived) = tokio::join!(feed(1), sink.wait_for(1, limit));
    let (_, arrived) = (sent?, arrived.map_err(|e| anyhow!(e))?);
    let first = arrived - warm_up;
    let (cpu_before, rss) = (
        procs::cpu_seconds(&pids),
        procs::PeakRss::watch(pids.clone()),
    );
    let started = Instant::now();
    let want = messages as u64 + 1;
    let (acked, delivered) = tokio::join!(feed(messages), sink.wait_for(want, limit));
    let (acked, delivered) = (acked?, delivered.map_err(|e| anyhow!(e))?);
    let cpu = procs::cpu_seconds(&pids) - cpu_before;
    let peak_memory = rss.peak_bytes();
    // Anything sent twice would arrive after the last expected message.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = sink.count().map_err(|e| anyhow!(e))?;
    if received != want {
        bail!(
            "{}: the sink received {received} messages for {want} sent (with the warm-up)",
            relay.name(args.kafka.is_some())
        );
    }
    drop((postfix, sluice, sink));
    settle().await?;
    Ok(Run {
        relay,
        size,
        messages,
        acked: acked - started,
        first,
        delivered: delivered - started,
        cpu,
        peak_memory,
    })
}

/// Lets the next run start on a quiet disk: the last run's dirty pages
/// (Postfix's queue files, Sluice's log) are written back first, so its
/// fsyncs do not wait behind them.
async fn settle() -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sync").status().await?;
    if !status.success() {
        bail!("sync failed: {status}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

fn print_table(runs: &[Run], kafka: bool) {
    println!();
    println!(
        "| size | relay | messages | delivered msg/s | ingest acks/s | first delivery | CPU (% of one core) | peak memory (PSS) | delivered vs Postfix |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for run in runs {
        let rate = |d: Duration| run.messages as f64 / d.as_secs_f64();
        let postfix: Vec<f64> = runs
            .iter()
            .filter(|r| r.relay == Relay::Postfix && r.size == run.size)
            .map(|r| r.messages as f64 / r.delivered.as_secs_f64())
            .collect();
        let ratio = match postfix.len() {
            0 => "–".to_owned(),
            n => format!(
                "{:.2}×",
                rate(run.delivered) * n as f64 / postfix.iter().sum::<f64>()
            ),
        };
        println!(
            "| {} KB | {} | {} | {:.0} | {:.0} | {:.1} s | {:.0} % | {} MB | {ratio} |",
            run.size / 1024,
            run.relay.name(kafka),
            run.messages,
            rate(run.delivered),
            rate(run.acked),
            run.first.as_secs_f64(),
            100.0 * run.cpu / run.delivered.as_secs_f64(),
            run.peak_memory / (1 << 20),
        );
    }
    println!(
        "\nratio: each run's delivered msg/s over the mean of the Postfix runs of its size; \
         first delivery: seconds from submitting the untimed warm-up message to its arrival"
    );
}
