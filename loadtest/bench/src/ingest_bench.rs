//! Ingest throughput benchmark (not a test): accepted recipients per second
//! into a real Kafka with RSA-2048 DKIM signing, next to the machine's
//! signing bound measured in the same run (`openssl speed -multi <CPUs>
//! -seconds 3 rsa2048`: every core signing, nothing else).
//!
//! `cargo run --release -p sluice-loadtest --bin ingest-bench [recipients] [per-message] [clients]`
//!
//! `per-message` 1 is the way most mail arrives: distinct messages of about
//! 10 KB with one recipient each, so one signature per recipient; the
//! default, 100, is a templated campaign send.
//!
//! `SLUICE_BENCH_LINGER=<duration>` sets ingest's `kafka.linger` (default
//! `5ms`, as a node has it): shorter answers sooner at low load, longer
//! batches more at high load.
//!
//! `SLUICE_BENCH_TRACE_SAMPLE=<ratio>` exports traces at that sampling ratio
//! to an OTLP collector inside the benchmark (the cost of tracing on);
//! without it no exporter is installed (tracing off, as by default).

#[path = "machine.rs"]
mod machine;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use sluice_ingest::{IngestConfig, IngestListeners, hash_secret};
use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{Recipient, SendRequest, Template, send_request};

/// Concurrent `Send` calls unless the third argument says otherwise.
const CONCURRENT_CLIENTS: usize = 32;
const KEY: &str = "bench-key-0123456789";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = std::env::args().nth(1).map_or(Ok(20_000), |a| a.parse())?;
    let per_message: usize = std::env::args().nth(2).map_or(Ok(100), |a| a.parse())?;
    let clients: usize = std::env::args()
        .nth(3)
        .map_or(Ok(CONCURRENT_CLIENTS), |a| a.parse())?;
    let (collector, _exporting) = tracing_on().await?;
    let kafka = sluice_log::KafkaConfig::from_env("sluice-ingest-bench");
    sluice_log::probe(&kafka, Duration::from_secs(10)).await?;
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let dir = std::env::temp_dir().join(format!("sluice-ingest-bench-{run}"));
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("rsa.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.to_str().ok_or("path")?,
    ])?;
    let prefix = format!("sluice.bench.{run}.outbound.");
    let events = format!("sluice.bench.{run}.events");
    sluice_log::create_topic(&kafka, &format!("{prefix}shared"), 4).await?;
    sluice_log::create_topic(&kafka, &events, 4).await?;
    let linger = std::env::var("SLUICE_BENCH_LINGER").unwrap_or_else(|_| "5ms".into());
    let toml = config(&kafka.brokers, &prefix, &events, &key).replace(
        "[unsubscribe]",
        &format!("linger = \"{linger}\"\n[unsubscribe]"),
    );
    let config = IngestConfig::from_toml(&toml)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = sluice_node::CancellationToken::new();
    let listeners = IngestListeners {
        grpc: Some(listener),
        ..Default::default()
    };
    let backends = sluice_ingest::IngestBackends::open(&config)?;
    let node = tokio::spawn(sluice_ingest::run(
        listeners,
        config,
        backends,
        stop.clone(),
    ));

    let client = IngestClient::connect(format!("http://{addr}")).await?;
    drive(&client, per_message * clients, (per_message, clients)).await?; // warm-up
    let started = Instant::now();
    let mut latencies = drive(&client, total, (per_message, clients)).await?;
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    stop.cancel();
    node.await??;
    std::fs::remove_dir_all(&dir)?;

    let rate = total as f64 / elapsed.as_secs_f64();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let openssl_rate = openssl_sign_rate(cpus)?;
    println!(
        "method: {total} recipients, {per_message} per templated message (about 10 KB), \
              {clients} concurrent gRPC Send calls, each recipient rendered, \
              RSA-2048 DKIM-signed and acknowledged by Kafka (acks=all, idempotent) \
              with its accepted event; producer linger {linger}"
    );
    println!(
        "machine: {}, {} CPUs visible (shared with other builds), {}",
        machine::cpu_model(),
        machine::cpus(),
        std::env::consts::ARCH
    );
    match &collector {
        None => println!("tracing: off (no exporter installed)"),
        Some((collector, sample)) => println!(
            "tracing: on, sampling {sample}, {} spans received by the in-process OTLP collector",
            collector.spans().len()
        ),
    }
    println!("ingest: {rate:.0} accepted recipients/s ({elapsed:.2?})");
    println!(
        "Send call latency at that load ({} calls): p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!("openssl speed -multi {cpus} -seconds 3 rsa2048: {openssl_rate:.0} signs/s");
    println!(
        "ratio: {:.0} % (target >= 70 %)",
        100.0 * rate / openssl_rate
    );
    Ok(())
}

type Tracing = (
    Option<(sluice_testkit::otlp::Collector, f64)>,
    Option<sluice_node::trace::Exporting>,
);

/// With `SLUICE_BENCH_TRACE_SAMPLE` set: a collector in this process and the
/// exporting layer sending to it, as `sluice --otlp-endpoint` installs it.
async fn tracing_on() -> Result<Tracing, Box<dyn std::error::Error>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let Ok(text) = std::env::var("SLUICE_BENCH_TRACE_SAMPLE") else {
        return Ok((None, None));
    };
    let sample: f64 = text.parse()?;
    let collector = sluice_testkit::otlp::Collector::start().await;
    let settings = sluice_node::trace::Settings {
        endpoint: collector.endpoint(),
        sample,
        service: "sluice-ingest-bench".into(),
    };
    let (layer, exporting) = sluice_node::trace::layer(&settings)?;
    tracing_subscriber::registry().with(layer).init();
    Ok((Some((collector, sample)), Some(exporting)))
}

/// Sends `total` recipients from `clients` concurrent callers; returns the
/// time each `Send` call took.
async fn drive(
    client: &IngestClient<tonic::transport::Channel>,
    total: usize,
    (per_message, clients): (usize, usize),
) -> Result<Vec<std::time::Duration>, tonic::Status> {
    let messages = total.div_ceil(per_message);
    let per_client = messages.div_ceil(clients);
    let workers = (0..clients).map(|worker| {
        let mut client = client.clone();
        async move {
            let mut took = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let mut request = tonic::Request::new(message(worker, i, per_message));
                let bearer = format!("Bearer {KEY}")
                    .parse()
                    .map_err(|_| tonic::Status::internal("key"))?;
                request.metadata_mut().insert("authorization", bearer);
                let sent = Instant::now();
                client.send(request).await?;
                took.push(sent.elapsed());
            }
            Ok::<_, tonic::Status>(took)
        }
    });
    let per_worker = try_join_all(workers).await?;
    Ok(per_worker.into_iter().flatten().collect())
}

fn message(worker: usize, index: usize, per_message: usize) -> SendRequest {
    let recipients = (0..per_message)
        .map(|r| Recipient {
            address: format!("user{worker}-{index}-{r}@example.org"),
            name: format!("User {r}"),
            substitutions: HashMap::from([("first".to_owned(), format!("User{r}"))]),
        })
        .collect();
    SendRequest {
        from: "Bench <bench@bench.example>".into(),
        recipients,
        content: Some(send_request::Content::Template(Template {
            subject: "Hello {{ first }}".into(),
            text: "Hi {{ first }},\n\nThis is a benchmark message of typical size.\n".repeat(90),
            html: "<p>Hi {{ first }}, this is a benchmark message.</p>".repeat(90),
        })),
        campaign: "bench".into(),
        ..Default::default()
    }
}

fn config(brokers: &str, prefix: &str, events: &str, key: &Path) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
outbound_topic_prefix = "{prefix}"
events_topic = "{events}"
[unsubscribe]
base_url = "https://unsub.bench/u"
secret = "bench-secret-bench-secret-bench-secret"
[[tenants]]
name = "bench"
api_keys = ["{hash}"]
default_pool = "shared"
domains = [{{ name = "bench.example", dkim_selector = "s1", dkim_private_key_file = "{key}" }}]
"#,
        hash = hash_secret(KEY),
        key = key.display()
    )
}

fn openssl(args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let output = Command::new("openssl").args(args).output()?;
    if !output.status.success() {
        return Err(format!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Signs per second of every CPU together, from the `rsa 2048 bits <sign s>
/// <verify s> <sign/s> <verify/s>` line.
fn openssl_sign_rate(cpus: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let cpus = cpus.to_string();
    let out = openssl(&["speed", "-multi", &cpus, "-seconds", "3", "rsa2048"])?;
    let line = out
        .lines()
        .find(|l| l.starts_with("rsa 2048 bits"))
        .ok_or("no rsa 2048 line")?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    Ok(fields.get(5).ok_or("short line")?.parse()?)
}
