//! A throttled site's backlog (issue #14 item 6): `--throttled` messages
//! for one site that Sluice holds to `--per-minute`, while a steady stream
//! flows to another site, on `sluice dev`.
//!
//! Method. The ISP simulator runs in this process with two providers,
//! `slow` and `fast`. Phase 1 (`--baseline` minutes): only the steady
//! stream (`--fast-rate` messages/s to `fast.test`); its CPU and delivery
//! rate are the baseline. Phase 2: the backlog is submitted over gRPC
//! `SendBatch` while the stream goes on. Phase 3 (`--minutes`): the
//! backlog waits; every 30 s a line gives the sender's re-writes
//! (`sluice_sender_overflowed_total` plus `sluice_sender_tier_hops_total`:
//! each one writes a waiting message to a delay tier again), the process's
//! CPU and resident memory, and what each provider accepted. Phase 4 (with `--raise-to`): the site's limit is
//! raised through control and the time until the simulator has accepted
//! the whole backlog is measured (at most `--drain-limit` minutes).
//!
//! Checks, printed at the end: re-writes per backlog message, CPU above
//! the baseline, the stream's delivery rate against the baseline, peak RSS
//! in the second half of phase 3 against the first, and the most messages
//! the slow provider accepted in any 60 s of phase 3 against the limit.
//! The simulator's limit for `slow` is the raised one (or `--per-minute`),
//! so phase 4 is not refused; phase 3's limit is checked from its log.

#[path = "machine.rs"]
mod machine;
// Only its CPU reading is used here.
#[allow(dead_code)]
#[path = "peer/procs.rs"]
mod procs;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::future::try_join_all;
use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{Recipient, SendRequest, SitePolicy, Template, send_request::Content};
use tonic::transport::Channel;

/// Measures how often a throttled site's backlog is re-written to the delay
/// tiers, and what it costs the node and the other sites.
#[derive(Debug, Parser)]
struct Args {
    /// The `sluice` binary to run (a release build).
    #[arg(long)]
    sluice: PathBuf,
    /// Messages submitted for the throttled site.
    #[arg(long, default_value_t = 1_000_000)]
    throttled: usize,
    /// The throttled site's limit, messages per minute.
    #[arg(long, default_value_t = 10)]
    per_minute: u32,
    /// Messages per second to the other site, all along.
    #[arg(long, default_value_t = 20)]
    fast_rate: u32,
    /// Minutes of the stream alone before the backlog is submitted.
    #[arg(long, default_value_t = 2)]
    baseline: u64,
    /// Minutes to watch the backlog wait.
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    /// The sender's `queues.max_overflow_hold`.
    #[arg(long, default_value = "1h")]
    max_hold: String,
    /// Raise the site's limit to this many per minute at the end and time
    /// the drain (0: do not).
    #[arg(long, default_value_t = 0)]
    raise_to: u32,
    /// Minutes the drain may take at most.
    #[arg(long, default_value_t = 90)]
    drain_limit: u64,
    /// Directory for the data (default: the system's temporary directory).
    #[arg(long)]
    work: Option<PathBuf>,
}

/// One reading of the node and the simulator.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    rewrites: u64,
    cpu: f64,
    rss_kib: u64,
    slow: usize,
    fast: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "backlog bench: {} messages for a site held to {}/min beside {} msg/s to another site; \
         max_overflow_hold {}; machine: {} x {}",
        args.throttled,
        args.per_minute,
        args.fast_rate,
        args.max_hold,
        machine::cpus(),
        machine::cpu_model()
    );
    let sim_limit = args.raise_to.max(args.per_minute);
    let sim = sluice_testkit::sender::start_sim(&scenario(sim_limit)).await;
    let work = args.work.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&work).context("data directory")?;
    let metrics = sluice_testkit::cluster::free_addr();
    let file = dir.path().join("dev.toml");
    std::fs::write(&file, config(&args, &sim, dir.path(), metrics))?;
    let mut dev = sluice_testkit::dev::start_dev(&args.sluice, &file).await;
    let pid = dev.child.id().context("sluice dev's pid")?;
    let ingest = IngestClient::connect(dev.ingest.clone())
        .await
        .context("connect to ingest")?
        .max_decoding_message_size(64 << 20);
    let read = |at: Instant| reading(metrics, pid, &sim, at);

    let stream = tokio::spawn(steady_stream(ingest.clone(), args.fast_rate));
    println!("phase 1: the stream alone for {} min", args.baseline);
    let start = read(Instant::now()).await?;
    tokio::time::sleep(Duration::from_secs(args.baseline * 60)).await;
    let base_end = read(Instant::now()).await?;
    let base_cpu = cpu_percent(&start, &base_end);
    let base_rate = per_second(start.fast, base_end.fast, &start, &base_end);
    println!("  baseline: CPU {base_cpu:.1} %, stream delivered {base_rate:.1} msg/s");

    println!("phase 2: submitting {} messages", args.throttled);
    let submitted = Instant::now();
    submit_backlog(ingest.clone(), args.throttled).await?;
    println!(
        "  accepted in {:.0?} ({:.0} msg/s)",
        submitted.elapsed(),
        args.throttled as f64 / submitted.elapsed().as_secs_f64()
    );

    println!("phase 3: watching for {} min", args.minutes);
    let watched = watch(&read, args.minutes).await?;
    let (first, last) = (watched[0], *watched.last().expect("readings"));
    let half = &watched[watched.len() / 2..];
    let first_half_peak = watched[..watched.len() / 2]
        .iter()
        .map(|r| r.rss_kib)
        .max()
        .unwrap_or(0);
    let second_half_peak = half.iter().map(|r| r.rss_kib).max().unwrap_or(0);
    let cpu = cpu_percent(&half[0], &last);
    let rate = per_second(half[0].fast, last.fast, &half[0], &last);
    let peak = peak_per_minute(&sim, "slow", first.at, last.at);
    let rewrites = last.rewrites as f64 / args.throttled as f64;

    let drain = if args.raise_to > 0 {
        let token = dir.path().join("data/control.token");
        Some(raise_and_drain(&args, (&dev.control, &token), &read, last.slow).await?)
    } else {
        None
    };
    stream.abort();
    let report = sim.snapshot();
    let _ = dev.child.start_kill();

    println!("\nresults ({} messages in the backlog)", args.throttled);
    println!("| measure | value |\n|---|---|");
    println!(
        "| re-writes per backlog message over {} min | {rewrites:.3} ({} in all) |",
        args.minutes, last.rewrites
    );
    println!("| CPU, second half of the wait | {cpu:.1} % (stream alone: {base_cpu:.1} %) |");
    println!("| stream delivered, second half | {rate:.1} msg/s (alone: {base_rate:.1}) |");
    println!(
        "| RSS peak, first / second half | {} / {} MiB |",
        first_half_peak / 1024,
        second_half_peak / 1024
    );
    println!(
        "| throttled site: most accepted in 60 s | {peak} (limit {}) |",
        args.per_minute
    );
    println!(
        "| throttled site: accepted during the wait | {} |",
        last.slow - first.slow
    );
    if let Some(drain) = drain {
        println!(
            "| drain after raising to {}/min | {} |",
            args.raise_to,
            drain.map_or("not within the limit".into(), |d| format!("{d:.0?}"))
        );
    }
    println!(
        "| simulator limit violations | {} |",
        report.total_violations()
    );
    println!("\nwhat the simulator saw:\n{report}");
    Ok(())
}

fn scenario(slow_limit: u32) -> String {
    format!(
        "seed = 5\n\
         [[provider]]\nname = \"slow\"\nlisten = \"127.0.0.2:0\"\ndomains = [\"slow.test\"]\n\
         [provider.limits]\nmessages_per_minute = {slow_limit}\n\
         [[provider]]\nname = \"fast\"\nlisten = \"127.0.0.3:0\"\ndomains = [\"fast.test\"]\n"
    )
}

fn config(
    args: &Args,
    sim: &sluice_sim::SimHandle,
    dir: &std::path::Path,
    metrics: std::net::SocketAddr,
) -> String {
    let slow = sim.addr("slow").expect("slow bound");
    let fast = sim.addr("fast").expect("fast bound");
    format!(
        "{listeners}\
         [sender.routes]\n\"slow.test\" = [\"{slow}\"]\n\"fast.test\" = [\"{fast}\"]\n\
         [sender.metrics]\nlisten = \"{metrics}\"\n\
         [sender.queues]\nmax_overflow_hold = \"{hold}\"\n\
         [[sender.shaping.ips]]\naddress = \"127.0.0.40\"\npool = \"default\"\n\
         [[sender.shaping.sites.rules]]\npattern = \"{slow_ip}\"\nsite = \"slow\"\nprovider = \"slow\"\n\
         [[sender.shaping.sites.rules]]\npattern = \"{fast_ip}\"\nsite = \"fast\"\nprovider = \"fast\"\n\
         [sender.shaping.limits.default]\nmessages_per_minute = 60000\nburst = 50\nmax_connections = 4\n\
         [sender.shaping.limits.sites.slow]\nmessages_per_minute = {per_minute}\nburst = 1\nmax_connections = 1\n",
        listeners = sluice_testkit::dev::listeners(dir),
        slow_ip = slow.ip(),
        fast_ip = fast.ip(),
        hold = args.max_hold,
        per_minute = args.per_minute,
    )
}

/// The metrics page (HTTP/1.0, so the server closes after the answer).
async fn scrape(metrics: std::net::SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(metrics)
        .await
        .context("connect to the metrics listener")?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

async fn reading(
    metrics: std::net::SocketAddr,
    pid: u32,
    sim: &sluice_sim::SimHandle,
    at: Instant,
) -> anyhow::Result<Reading> {
    let text = scrape(metrics).await?;
    let counter = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .with_context(|| format!("{name} in the metrics"))
    };
    // Every re-write of a waiting message: from a full queue into a tier,
    // or from a tier on to the next.
    let rewrites =
        counter("sluice_sender_overflowed_total")? + counter("sluice_sender_tier_hops_total")?;
    let report = sim.snapshot();
    let count = |p: &str| report.messages.iter().filter(|m| m.provider == p).count();
    Ok(Reading {
        at,
        rewrites,
        cpu: procs::cpu_seconds(&[pid]),
        rss_kib: rss_kib(pid),
        slow: count("slow"),
        fast: count("fast"),
    })
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_percent(a: &Reading, b: &Reading) -> f64 {
    100.0 * (b.cpu - a.cpu) / b.at.duration_since(a.at).as_secs_f64()
}

fn per_second(a: usize, b: usize, from: &Reading, to: &Reading) -> f64 {
    (b - a) as f64 / to.at.duration_since(from.at).as_secs_f64()
}

/// Readings every 30 s for `minutes`, each printed.
async fn watch<F, Fut>(read: &F, minutes: u64) -> anyhow::Result<Vec<Reading>>
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Reading>>,
{
    let begin = Instant::now();
    let mut out = vec![read(begin).await?];
    while begin.elapsed() < Duration::from_secs(minutes * 60) {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let r = read(Instant::now()).await?;
        let prev = out.last().expect("a reading");
        println!(
            "  {:>5.0}s re-writes {:>9} (+{:<7}) CPU {:>5.1} % RSS {:>5} MiB slow {:>6} fast {:>8}",
            begin.elapsed().as_secs_f64(),
            r.rewrites,
            r.rewrites - prev.rewrites,
            cpu_percent(prev, &r),
            r.rss_kib / 1024,
            r.slow,
            r.fast
        );
        out.push(r);
    }
    Ok(out)
}

/// The most messages `provider` accepted in any 60 s between `from` and `to`.
fn peak_per_minute(
    sim: &sluice_sim::SimHandle,
    provider: &str,
    from: Instant,
    to: Instant,
) -> usize {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let ago = |t: Instant| now_ms - t.elapsed().as_millis() as u64;
    let (lo, hi) = (ago(from), ago(to));
    let mut times: Vec<u64> = sim
        .snapshot()
        .messages
        .iter()
        .filter(|m| m.provider == provider)
        .map(|m| m.accepted_at_unix_ms)
        .filter(|t| (lo..=hi).contains(t))
        .collect();
    times.sort_unstable();
    let mut peak = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= 60_000 {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    peak
}

fn request(to: String, subject: &str) -> SendRequest {
    SendRequest {
        from: "dev@sluice.test".into(),
        recipients: vec![Recipient {
            address: to,
            ..Default::default()
        }],
        content: Some(Content::Template(Template {
            subject: subject.into(),
            text: "Hello from the backlog bench.".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn keyed<T>(body: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    request.metadata_mut().insert(
        "authorization",
        "Bearer sluice-dev-key".parse().expect("metadata"),
    );
    request
}

/// `rate` messages a second to `fast.test` until aborted.
async fn steady_stream(mut ingest: IngestClient<Channel>, rate: u32) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        let requests: Vec<SendRequest> = (0..rate)
            .map(|i| request(format!("user{}@fast.test", n + u64::from(i)), "stream"))
            .collect();
        n += u64::from(rate);
        let batch = keyed(futures::stream::iter(requests));
        if let Err(status) = ingest.send_batch(batch).await {
            eprintln!("stream: SendBatch refused: {status}");
        }
    }
}

/// Submits the backlog over 4 concurrent `SendBatch` calls of 200.
async fn submit_backlog(ingest: IngestClient<Channel>, n: usize) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(n as u64).with_message("backlog accepted");
    let streams = 4;
    let per = n.div_ceil(streams);
    let workers = (0..streams).map(|w| {
        let (mut ingest, bar) = (ingest.clone(), bar.clone());
        async move {
            let range: Vec<usize> = (w * per..((w + 1) * per).min(n)).collect();
            for chunk in range.chunks(200) {
                let requests: Vec<SendRequest> = chunk
                    .iter()
                    .map(|i| request(format!("user{i}@slow.test"), "backlog"))
                    .collect();
                ingest
                    .send_batch(keyed(futures::stream::iter(requests)))
                    .await?;
                bar.inc(chunk.len() as u64);
            }
            Ok::<_, tonic::Status>(())
        }
    });
    try_join_all(workers).await.context("SendBatch")?;
    bar.finish();
    Ok(())
}

/// Raises the slow site's limit through control; the time until the
/// simulator accepted the whole backlog, or `None` past `--drain-limit`.
async fn raise_and_drain<F, Fut>(
    args: &Args,
    (control, token): (&str, &std::path::Path),
    read: &F,
    before: usize,
) -> anyhow::Result<Option<Duration>>
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Reading>>,
{
    println!("phase 4: raising the limit to {}/min", args.raise_to);
    let token = std::fs::read_to_string(token).context("control token")?;
    let mut admin = sluice_control_client::client(&format!("http://{control}"), Some(token.trim()))
        .await
        .map_err(|e| anyhow::anyhow!("control: {e}"))?;
    admin
        .put_site_policy(SitePolicy {
            site: "slow".into(),
            messages_per_minute: args.raise_to,
            max_connections: 4,
            // Without these the built-in 100 messages per connection and
            // 60 new connections a minute hold the drain to 100 a second.
            messages_per_connection: 1000,
            new_connections_per_minute: 600,
            burst: 100,
            ..Default::default()
        })
        .await
        .context("raise the limit")?;
    let raised = Instant::now();
    let bar = indicatif::ProgressBar::new((args.throttled - before.min(args.throttled)) as u64)
        .with_message("backlog delivered");
    loop {
        let r = read(Instant::now()).await?;
        bar.set_position((r.slow - before) as u64);
        if r.slow >= args.throttled {
            bar.finish();
            return Ok(Some(raised.elapsed()));
        }
        if raised.elapsed() > Duration::from_secs(args.drain_limit * 60) {
            bar.abandon();
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
