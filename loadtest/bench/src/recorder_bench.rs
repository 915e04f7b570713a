//! Benchmark (not a test): recorded events per second against real Kafka and
//! Cassandra.
//!
//! `cargo run --release -p sluice-loadtest --bin recorder-bench -- --events 50000 [--recorders 2] [--embedded]`
//!
//! Produces N events to a fresh topic, then runs the recorder (fresh keyspace
//! and group) until every event is counted, and prints the method, the
//! machine and the rate. Servers from SLUICE_KAFKA_BROKERS / SLUICE_CASSANDRA;
//! with `--embedded`, the embedded log and ledger of `sluice dev` in a
//! temporary directory instead (no servers).

#[path = "machine.rs"]
mod machine;

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_cql::CqlConfig;
use sluice_log::KafkaConfig;
use sluice_proto::v1::{BounceClass, Event, EventKind};
use sluice_recorder::{Metrics, RecorderConfig};

type Res<T> = Result<T, Box<dyn Error>>;

fn arg(name: &str, default: u64) -> Res<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or(format!("{name} needs a value"))?
            .parse()?),
        None => Ok(default),
    }
}

/// A realistic mix: 90 % delivered, 5 % deferred, 3 % soft and 2 % hard
/// bounces, over 8 source IPs x 5 sites, 20 campaigns, 4 tenants.
fn event(i: u64, now: i64) -> Event {
    let (kind, class) = match i % 100 {
        0..=89 => (EventKind::Delivered, BounceClass::Unspecified),
        90..=94 => (EventKind::Deferred, BounceClass::RateLimit),
        95..=97 => (EventKind::Bounced, BounceClass::MailboxFull),
        _ => (EventKind::Bounced, BounceClass::BadMailbox),
    };
    let sites = ["google", "yahoo", "outlook", "apple", "other"];
    Event {
        event_id: format!("ev-{i}"),
        kind: kind.into(),
        bounce_class: class.into(),
        message_id: format!("bench-{i}"),
        tenant: format!("tenant-{}", i % 4),
        campaign: format!("campaign-{}", i % 20),
        recipient: format!("user{i}@example.com"),
        source_ip: format!("10.0.0.{}", i % 8 + 1),
        site: sites[(i / 8 % 5) as usize].into(),
        at: Some(prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn produce(kafka: &KafkaConfig, topic: &str, n: u64) -> Res<()> {
    let producer: FutureProducer = kafka.producer().create()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let sends = futures::stream::iter(0..n).map(|i| {
        let producer = &producer;
        async move {
            let (key, payload) = (format!("bench-{i}"), event(i, now).encode_to_vec());
            let record = FutureRecord::to(topic).key(&key).payload(&payload);
            producer
                .send(record, Duration::from_secs(60))
                .await
                .map(drop)
                .map_err(|(e, _)| e)
        }
    });
    let results: Vec<_> = sends.buffer_unordered(10_000).collect().await;
    results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(())
}

/// Waits until the recorders counted `n` events together; returns the rate
/// over the whole wait and the rate after the first counted batch.
async fn timed(metrics: &[Arc<Metrics>], n: u64) -> (f64, f64) {
    let counted = || {
        metrics
            .iter()
            .map(|m| Metrics::get(&m.counted))
            .sum::<u64>()
    };
    let start = Instant::now();
    let mut first = None;
    while counted() < n {
        if first.is_none() && counted() > 0 {
            first = Some((Instant::now(), counted()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = n as f64 / start.elapsed().as_secs_f64();
    let batches: u64 = metrics.iter().map(|m| Metrics::get(&m.batches)).sum();
    println!(
        "batches written: {batches} ({:.0} events each on average)",
        n as f64 / batches.max(1) as f64
    );
    let (t0, c0) = first.unwrap_or((start, 0));
    (total, (n - c0) as f64 / t0.elapsed().as_secs_f64())
}

fn print_machine(total: f64, steady: f64) {
    println!(
        "machine: {} cores, {}",
        machine::cpus(),
        machine::cpu_model()
    );
    println!("events/s (incl. group join): {total:.0}");
    println!("events/s (after first batch): {steady:.0}");
}

/// The recorder on the embedded log and ledger (`sluice dev`'s back ends).
async fn embedded(n: u64, partitions: i32) -> Res<()> {
    use sluice_log::{EmbeddedLog, MessageLog, NewRecord};
    let dir = std::env::temp_dir().join(format!(
        "sluice-recorder-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let log = EmbeddedLog::open(dir.join("log"))?;
    let config = RecorderConfig {
        topic: "sluice.events".into(),
        // Query listens on loopback only; the benchmark calls no method.
        allow_unauthenticated: true,
        ..RecorderConfig::default()
    };
    log.create_topic(&config.topic, partitions).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let started = Instant::now();
    let ids: Vec<u64> = (0..n).collect();
    for chunk in ids.chunks(1000) {
        let records = chunk
            .iter()
            .map(|&i| NewRecord {
                topic: config.topic.clone(),
                key: format!("bench-{i}").into_bytes(),
                payload: event(i, now).encode_to_vec(),
                headers: Vec::new(),
            })
            .collect();
        log.append_batch(records).await?;
    }
    println!(
        "produced {n} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ledger_dir = dir.join("ledger");
    std::fs::create_dir_all(&ledger_dir)?;
    let ledger = sluice_recorder::EmbeddedLedger::open(&ledger_dir, 30, 7)?;
    let metrics = Arc::new(Metrics::default());
    let backends = sluice_recorder::RecorderBackends {
        log: log.into(),
        ledger: Arc::new(ledger.into()),
        metrics: metrics.clone(),
    };
    let (total, steady) = run_timed(&config, vec![backends], n).await?;
    println!(
        "method: {n} events pre-appended to a {partitions}-partition topic of the embedded log; \
         one recorder (batch {}, {} writes in flight) on the embedded ledger (fjall; a batch's \
         rows, claims and counter parts are one durable write each) consumes, writes and \
         commits; timed until every event is counted",
        config.batch_max_events, config.write_concurrency
    );
    print_machine(total, steady);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Runs one recorder per `backends` (one consumer group) until `n` events
/// are counted; returns the rates of [`timed`].
async fn run_timed(
    config: &RecorderConfig,
    backends: Vec<sluice_recorder::RecorderBackends>,
    n: u64,
) -> Res<(f64, f64)> {
    let metrics: Vec<Arc<Metrics>> = backends.iter().map(|b| b.metrics.clone()).collect();
    let stop = sluice_node::CancellationToken::new();
    let mut tasks = Vec::new();
    for backends in backends {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        tasks.push(tokio::spawn(sluice_recorder::run(
            sluice_recorder::RecorderListeners {
                query: listener,
                metrics: None,
            },
            config.clone(),
            backends,
            stop.clone(),
        )));
    }
    // A recorder that stops early (a configuration or back-end error) ends
    // the benchmark with its error instead of a wait that never ends.
    let mut running = futures::future::select_all(tasks);
    let timing = tokio::select! {
        timing = timed(&metrics, n) => timing,
        (ended, _, _) = &mut running => {
            ended??;
            return Err("a recorder stopped before every event was counted".into());
        }
    };
    stop.cancel();
    for task in running.into_inner() {
        task.await??;
    }
    Ok(timing)
}

#[tokio::main]
async fn main() -> Res<()> {
    // The recorder's warnings (a failing write it retries) on stderr.
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(std::io::stderr)
        .init();
    let n = arg("--events", 50_000)?;
    let partitions = i32::try_from(arg("--partitions", 6)?)?;
    if std::env::args().any(|a| a == "--embedded") {
        return embedded(n, partitions).await;
    }
    let kafka = KafkaConfig::from_env("sluice-recorder-bench");
    sluice_log::probe(&kafka, Duration::from_secs(10)).await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let config = RecorderConfig {
        brokers: kafka.brokers.clone(),
        cassandra: CqlConfig::from_env().contact_points,
        keyspace: format!("bench_{}", &id[..16]),
        topic: format!("sluice.bench.events.{id}"),
        group: format!("sluice-recorder-bench-{id}"),
        allow_unauthenticated: true,
        ..RecorderConfig::default()
    };
    let session = sluice_cql::connect(&config.cql()).await?;
    sluice_cql::migrate(&session, &config.keyspace, &config.replication).await?;
    sluice_log::create_topic(&kafka, &config.topic, partitions).await?;
    let started = Instant::now();
    produce(&kafka, &config.topic, n).await?;
    println!(
        "produced {n} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let recorders = arg("--recorders", 1)?;
    let mut all = Vec::new();
    for _ in 0..recorders {
        let stop = sluice_node::CancellationToken::new();
        let mut backends = sluice_recorder::RecorderBackends::open(&config, &stop).await?;
        backends.metrics = Arc::new(Metrics::default());
        all.push(backends);
    }
    let (total, steady) = run_timed(&config, all, n).await?;
    println!(
        "method: {n} events pre-produced to a {partitions}-partition topic; {recorders} recorder(s) \
              in one process and one group (batch {}, {} statements in flight each) consume, write \
              (history and campaign rows, a de-dup claim read and write, counter parts per batch) \
              and commit; timed until every event is counted",
        config.batch_max_events, config.write_concurrency
    );
    print_machine(total, steady);
    session
        .query_unpaged(format!("DROP KEYSPACE {}", config.keyspace), ())
        .await?;
    Ok(())
}
