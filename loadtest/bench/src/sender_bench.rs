//! Sender throughput: delivered messages per second from Kafka into one
//! unthrottled simulated provider.
//!
//! Method: produce N envelopes of the given size to a fresh topic (not timed),
//! start an in-process sender with limits far above what the machine can do,
//! and time from its start until the sender has reported N delivered
//! messages. The simulator runs in the same process and its CPU counts
//! against the sender's: the figure is a lower bound for the sender alone.
//!
//! Needs Kafka (`deploy/servers/kafka.sh start`); reads SLUICE_KAFKA_BROKERS.

#[path = "machine.rs"]
mod machine;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::future::try_join_all;
use prost::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_log::KafkaConfig;
use sluice_proto::v1::Envelope;
use sluice_sender::SenderConfig;
use sluice_sim::{Scenario, Simulator};

/// Measures delivered messages/s from Kafka into an unthrottled simulated provider.
#[derive(Debug, Parser)]
struct Args {
    /// Messages to deliver in each run.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Message sizes in bytes, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [10_240, 102_400])]
    sizes: Vec<usize>,
    /// Source IPs (127.0.0.10 and up).
    #[arg(long, default_value_t = 8)]
    ips: usize,
    /// Concurrent connections per source IP.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Use STARTTLS (the provider offers it either way).
    #[arg(long)]
    tls: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kafka = KafkaConfig::from_env("sluice-sender-bench");
    sluice_log::probe(&kafka, Duration::from_secs(10)).await?;
    println!("sender-bench: {}", machine());
    println!(
        "method: {} messages per size produced to a fresh 4-partition topic first (untimed); \
         timed from sender start to {} delivered; {} source IPs x {} connections; STARTTLS {}; \
         simulator in the same process",
        args.messages,
        args.messages,
        args.ips,
        args.connections,
        if args.tls { "on" } else { "off" }
    );
    for size in &args.sizes {
        let timing = run(&kafka, &args, *size).await?;
        let rate = timing.delivered as f64 / timing.total.as_secs_f64();
        let steady = timing.delivered as f64 / timing.from_first.as_secs_f64();
        println!(
            "size {:>7} B: {} delivered in {:.2} s = {:.0} messages/s ({:.1} MB/s); \
             from the first delivery (after the consumer group join): {:.2} s = {:.0} messages/s",
            size,
            timing.delivered,
            timing.total.as_secs_f64(),
            rate,
            rate * *size as f64 / 1e6,
            timing.from_first.as_secs_f64(),
            steady
        );
    }
    Ok(())
}

struct Timing {
    total: Duration,
    from_first: Duration,
    delivered: u64,
}

async fn run(kafka: &KafkaConfig, args: &Args, size: usize) -> anyhow::Result<Timing> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("sluice.bench.outbound.{id}");
    let pool = format!("bench{}", &id[..6]);
    let sim = Simulator::start(Scenario::parse(
        "[[provider]]\nname = \"sink\"\nlisten = \"127.0.0.2:0\"\ndomains = [\"sink.test\"]\nmax_message_size = 209715200\n",
    )?)
    .await?;
    let addr = sim.addr("sink").context("sink bound")?;
    produce(kafka, &topic, &pool, args.messages, size).await?;
    let mut config = format!(
        "node = \"bench\"\npool = \"{pool}\"\ndns = false\n\
         [kafka]\nbrokers = \"{}\"\noutbound_topic = \"{topic}\"\nevents_topic = \"sluice.bench.events.{id}\"\ngroup = \"bench-{id}\"\n\
         [smtp]\nopportunistic_tls = {}\n\
         [queues]\nmax_in_flight = 20000\nmax_per_site = 20000\n\
         [routes]\n\"sink.test\" = [\"{addr}\"]\n\
         [shaping.limits.default]\nmessages_per_second = 1000000\nmessages_per_minute = 60000000\nburst = 1000\n\
         max_connections = {}\nnew_connections_per_minute = 100000\nmessages_per_connection = 1000000\n",
        kafka.brokers, args.tls, args.connections
    );
    for i in 0..args.ips {
        config.push_str(&format!(
            "[[shaping.ips]]\naddress = \"127.0.0.{}\"\npool = \"{pool}\"\n",
            10 + i
        ));
    }
    let config = SenderConfig::from_toml(&config)?;
    let backends = sluice_sender::SenderBackends::open(&config).await?;
    let stats = backends.telemetry.stats.clone();
    let stop = sluice_node::CancellationToken::new();
    let started = Instant::now();
    let listeners = sluice_sender::SenderListeners::default();
    let task = tokio::spawn(sluice_sender::run(
        listeners,
        config,
        backends,
        stop.clone(),
    ));
    let target = args.messages as u64;
    let deadline = started + Duration::from_secs(600);
    let mut first = None;
    loop {
        let s = stats.lock().expect("stats").clone();
        if first.is_none() && s.delivered > 0 {
            first = Some(Instant::now());
        }
        if s.delivered + s.bounced + s.deferred >= target {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {target} delivered after 10 minutes: {s:?}",
                s.delivered
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = started.elapsed();
    let from_first = first.map_or(total, |f| f.elapsed());
    stop.cancel();
    task.await??;
    let final_stats = stats.lock().expect("stats").clone();
    sim.shutdown().await;
    if final_stats.delivered < target {
        bail!("not every message was delivered: {final_stats:?}");
    }
    Ok(Timing {
        total,
        from_first,
        delivered: final_stats.delivered,
    })
}

async fn produce(
    kafka: &KafkaConfig,
    topic: &str,
    pool: &str,
    n: usize,
    size: usize,
) -> anyhow::Result<()> {
    sluice_log::create_topic(kafka, topic, 4).await?;
    let producer: FutureProducer = kafka.producer().create()?;
    let line = format!("{}\r\n", "x".repeat(76));
    let body = line.repeat(size / line.len() + 1);
    for start in (0..n).step_by(1000) {
        let batch: Vec<Envelope> = (start..(start + 1000).min(n))
            .map(|i| {
                let id = format!("b{i:07}");
                let content = format!(
                    "Message-ID: <{id}@bench.test>\r\nFrom: a@origin.test\r\nTo: u{i}@sink.test\r\nSubject: bench\r\n\r\n{}",
                    &body[..size.saturating_sub(120).min(body.len())]
                );
                Envelope {
                    message_id: id,
                    pool: pool.into(),
                    return_path: "bounce@origin.test".into(),
                    recipient: format!("u{i}@sink.test"),
                    content: content.into_bytes(),
                    ..Default::default()
                }
            })
            .collect();
        let sends = batch.iter().map(|e| {
            let payload = e.encode_to_vec();
            let producer = &producer;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&e.message_id).payload(&payload),
                        Duration::from_secs(60),
                    )
                    .await
                    .map_err(|(err, _)| err)
            }
        });
        try_join_all(sends).await?;
    }
    Ok(())
}

fn machine() -> String {
    format!("{} cores, {}", machine::cpus(), machine::cpu_model())
}
