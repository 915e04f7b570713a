//! Benchmark (not a test): recorded events per second against real Kafka and
//! Cassandra.
//!
//! `cargo run --release -p sluice-loadtest --bin recorder-bench -- --events 50000 [--embedded]`
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

/// Waits until the recorder counted `n` events; returns the rate over the
/// whole wait and the rate after the first counted batch.
async fn timed(metrics: &Metrics, n: u64) -> (f64, f64) {
    let start = Instant::now();
    let mut first = None;
    while Metrics::get(&metrics.counted) < n {
        if first.is_none() && Metrics::get(&metrics.counted) > 0 {
            first = Some((Instant::now(), Metrics::get(&metrics.counted)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = n as f64 / start.elapsed().as_secs_f64();
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let backends = sluice_recorder::RecorderBackends {
        log: log.into(),
        ledger: Arc::new(ledger.into()),
        metrics: metrics.clone(),
    };
    let (total, steady) = run_timed(listener, &config, backends, n).await?;
    println!(
        "method: {n} events pre-appended to a {partitions}-partition topic of the embedded log; \
         one recorder (batch {}, {} writes in flight) on the embedded ledger (fjall, fsync per \
         write call) consumes, writes (history, campaign row, de-dup claim, counter rows) and \
         commits; timed until every event is counted",
        config.batch_max_events, config.write_concurrency
    );
    print_machine(total, steady);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Runs a recorder on `backends` until `n` events are counted; returns the
/// rates of [`timed`].
async fn run_timed(
    listener: tokio::net::TcpListener,
    config: &RecorderConfig,
    backends: sluice_recorder::RecorderBackends,
    n: u64,
) -> Res<(f64, f64)> {
    let metrics = backends.metrics.clone();
    let stop = sluice_node::CancellationToken::new();
    let task = tokio::spawn(sluice_recorder::run(
        sluice_recorder::RecorderListeners {
            query: listener,
            metrics: None,
        },
        config.clone(),
        backends,
        stop.clone(),
    ));
    let timing = timed(&metrics, n).await;
    stop.cancel();
    task.await??;
    Ok(timing)
}

#[tokio::main]
async fn main() -> Res<()> {
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

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let backends =
        sluice_recorder::RecorderBackends::open(&config, &sluice_node::CancellationToken::new())
            .await?;
    let (total, steady) = run_timed(listener, &config, backends, n).await?;
    println!(
        "method: {n} events pre-produced to a {partitions}-partition topic; one recorder (batch {}, \
              {} statements in flight) consumes, writes (history, campaign row, LWT de-dup claim, \
              6 counter rows summed per batch) and commits; timed until every event is counted",
        config.batch_max_events, config.write_concurrency
    );
    print_machine(total, steady);
    session
        .query_unpaged(format!("DROP KEYSPACE {}", config.keyspace), ())
        .await?;
    Ok(())
}
