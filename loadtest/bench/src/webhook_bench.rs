//! How fast one webhook dispatcher posts (issue #15 item 6): `sluice
//! webhooks` on Kafka drains a backlog of events into a local receiver.
//!
//! Method: a `sluice control` process (embedded store) holds tenant
//! `bench` with one webhook to this program's receiver (axum, HTTP/1.1 on
//! loopback), which checks every post's signature with the dispatcher's
//! own `sign::verify` and counts distinct event ids. `--events` distinct
//! `delivered` events of the tenant are appended to a fresh events topic
//! (`--partitions` partitions) before the dispatcher starts, so the run
//! measures draining a backlog. The rate is events received from the first
//! post to the last; CPU and peak memory (PSS) are the dispatcher
//! process's. Every event must arrive with a valid signature (repeats are
//! counted, not failures).
//!
//! Run it with `loadtest/webhooks.sh`, which builds the release binaries;
//! Kafka must be running (`deploy/servers/kafka.sh start`).

#[path = "machine.rs"]
mod machine;
#[path = "peer/procs.rs"]
mod procs;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::Parser;
use prost::Message;
use sluice_log::{KafkaConfig, KafkaLog, Log, MessageLog};
use sluice_proto::v1::{Event, EventKind, Tenant, Webhook};

const SECRET: &str = "webhook-bench-secret-0123456789";

#[derive(Parser)]
#[command(about = "Measures how fast one `sluice webhooks` dispatcher posts a backlog of events")]
struct Args {
    /// The `sluice` binary (release).
    #[arg(long)]
    sluice: std::path::PathBuf,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka: String,
    /// Events to post.
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Partitions of the events topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// The dispatcher's `max_concurrent_posts` (and `max_posts_per_webhook`).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    posts: u64,
    bad: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

async fn receive(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = headers
        .get(sluice_webhooks::sign::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let valid =
        sluice_webhooks::sign::verify(SECRET.as_bytes(), header, &body, now_secs, 300).is_ok();
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned));
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    seen.posts += 1;
    let (true, Some(id)) = (valid, id) else {
        seen.bad += 1;
        return StatusCode::UNAUTHORIZED;
    };
    let now = Instant::now();
    seen.first.get_or_insert(now);
    seen.last = Some(now);
    seen.ids.insert(id);
    StatusCode::OK
}

async fn start_receiver() -> anyhow::Result<(std::net::SocketAddr, Arc<Mutex<Seen>>)> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, seen))
}

/// Starts `sluice control` on the embedded store in `dir`; its address and
/// the admin token.
async fn start_control(
    sluice: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<(tokio::process::Child, std::net::SocketAddr, String)> {
    let addr = sluice_testkit::cluster::free_addr();
    let token = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(dir.join("node.token"), &token)?;
    let hash = sluice_node::secret::hash_secret(&token);
    let config = format!(
        "listen = \"{addr}\"\nstore = \"embedded\"\ndata_dir = \"{}\"\n\n[[credentials]]\n\
         name = \"bench\"\nrole = \"admin\"\ntoken_hash = \"{hash}\"\n",
        dir.join("control").display()
    );
    let path = sluice_testkit::cluster::write(dir, "control.toml", &config);
    let child = sluice_testkit::cluster::spawn_role(
        &sluice.display().to_string(),
        "control",
        &path,
        &[],
        "warn",
    );
    sluice_testkit::cluster::wait_listening(addr, "sluice control", Duration::from_secs(30)).await;
    Ok((child, addr, token))
}

async fn append_events(log: &Log, topic: &str, n: usize) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(n as u64).with_message("appending events");
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        let event = Event {
            event_id: format!("bench-{i:08}"),
            kind: EventKind::Delivered.into(),
            message_id: format!("m-{i:08}"),
            tenant: "bench".into(),
            recipient: format!("user{i}@example.com"),
            attempt: 1,
            at: Some(std::time::SystemTime::now().into()),
            ..Default::default()
        };
        let (log, topic) = (log.clone(), topic.to_owned());
        pending.push(async move {
            log.append(&topic, event.message_id.as_bytes(), &event.encode_to_vec())
                .await
        });
        if pending.len() >= 512 {
            use futures::StreamExt;
            pending.next().await.transpose()?;
            bar.inc(1);
        }
    }
    use futures::StreamExt;
    while let Some(done) = pending.next().await {
        done?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

fn dispatcher_toml(
    args: &Args,
    topic: &str,
    id: &str,
    control: std::net::SocketAddr,
    dir: &std::path::Path,
) -> String {
    format!(
        "brokers = \"{}\"\nevents_topic = \"{topic}\"\ngroup = \"wh-bench-{id}\"\n\
         retry_topic_prefix = \"sluice.bench.wh-retry.{id}\"\ndeliveries_topic = \"sluice.bench.wh-deliveries.{id}\"\n\
         max_concurrent_posts = {c}\nmax_posts_per_webhook = {c}\nallow_private_addresses = true\n\n\
         [control]\naddr = \"http://{control}\"\ntoken_file = \"{}\"\n",
        args.kafka,
        dir.join("node.token").display(),
        c = args.concurrency,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (receiver, seen) = start_receiver().await?;
    let (_control, control, token) = start_control(&args.sluice, dir.path()).await?;
    let mut admin = sluice_control_client::client(&format!("http://{control}"), Some(&token))
        .await
        .map_err(anyhow::Error::msg)?;
    admin
        .put_tenant(Tenant {
            name: "bench".into(),
            webhooks: vec![Webhook {
                id: "sink".into(),
                url: format!("http://{receiver}/hook"),
                secret: SECRET.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .context("putting the tenant")?;

    let id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("sluice.bench.events.{id}");
    let kafka = KafkaConfig::new(args.kafka.clone(), "webhook-bench");
    let log: Log = KafkaLog::connect(kafka).await?.into();
    log.create_topic(&topic, args.partitions).await?;
    append_events(&log, &topic, args.events).await?;

    let path = sluice_testkit::cluster::write(
        dir.path(),
        "webhooks.toml",
        &dispatcher_toml(&args, &topic, &id, control, dir.path()),
    );
    let dispatcher = sluice_testkit::cluster::spawn_role(
        &args.sluice.display().to_string(),
        "webhooks",
        &path,
        &[],
        "warn",
    );
    let pid = dispatcher.id().context("dispatcher pid")?;
    let peak = procs::PeakRss::watch(vec![pid]);
    let cpu_before = procs::cpu_seconds(&[pid]);
    let bar = indicatif::ProgressBar::new(args.events as u64).with_message("posts received");
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let got = seen.lock().unwrap_or_else(|e| e.into_inner()).ids.len();
        bar.set_position(got as u64);
        if got >= args.events {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {got} of {} events arrived within 30 minutes",
                args.events
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    let cpu = procs::cpu_seconds(&[pid]) - cpu_before;
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    let span = seen
        .last
        .zip(seen.first)
        .map_or(0.0, |(l, f)| (l - f).as_secs_f64());
    println!(
        "webhook-bench: one `sluice webhooks` dispatcher draining a backlog into a local receiver"
    );
    println!(
        "machine: {} ({} CPUs)",
        machine::cpu_model(),
        machine::cpus()
    );
    println!(
        "method: {} events on {} partitions, appended first; max_concurrent_posts {}; HTTP/1.1 on loopback, connections kept alive; every signature checked",
        args.events, args.partitions, args.concurrency
    );
    println!(
        "| events | posts | bad signatures | first to last post | posts/s | dispatcher CPU | CPU per 1,000 posts | peak PSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {span:.1} s | {:.0} | {cpu:.1} s | {:.2} s | {} MiB |",
        seen.ids.len(),
        seen.posts,
        seen.bad,
        seen.ids.len() as f64 / span.max(0.001),
        cpu * 1000.0 / seen.posts.max(1) as f64,
        peak.peak_bytes() / (1024 * 1024),
    );
    if seen.bad > 0 {
        bail!("{} posts had a bad signature", seen.bad);
    }
    Ok(())
}
