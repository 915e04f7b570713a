//! Test harness: a real ingest node on `127.0.0.1:0` listeners, unique
//! Kafka topics, DKIM keys made by `openssl`, and dkimpy as the independent
//! DKIM verifier.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use sluice_ingest::{IngestConfig, IngestListeners, hash_password, hash_secret};
use sluice_log::{KafkaConfig, create_topic, probe};
use sluice_node::CancellationToken;
use sluice_proto::v1::{Envelope, Event};
use tokio::net::TcpListener;

pub const ACME_KEY: &str = "acme-api-key-0123456789";
pub const GLOBEX_KEY: &str = "globex-api-key-0123456789";
pub const SMTP_USER: &str = "acme-smtp";
pub const SMTP_PASSWORD: &str = "acme-smtp-password";
pub const SUPPRESSED: &str = "blocked@example.net";

/// `unsubscribe.secret` of the test node (it also keys the tracking links).
pub const UNSUBSCRIBE_SECRET: &str = "test-secret-test-secret-test-secret";
/// `tracking.base_url` of the test node; tenant acme may track, globex not.
pub const TRACKING_BASE: &str = "https://track.test/t";

/// Knobs a test may turn.
#[derive(Clone)]
pub struct Options {
    /// Brokers to use instead of the reachable test cluster.
    pub brokers: Option<String>,
    pub publish_timeout_ms: u64,
    pub max_queued_records: u32,
    pub max_message_bytes: usize,
    pub globex_quota: u32,
    /// `suppressions.query_addr`, and its `timeout_ms`.
    pub suppressions_query: Option<(String, u64)>,
    /// `idempotency.query_addr`: keys shared through a Query service.
    pub idempotency_query: Option<String>,
    /// `limits.max_connections_per_ip`.
    pub max_connections_per_ip: usize,
    /// `smtp.data_timeout`.
    pub data_timeout: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            brokers: None,
            publish_timeout_ms: 20_000,
            max_queued_records: 100_000,
            max_message_bytes: 256 * 1024,
            globex_quota: 0,
            suppressions_query: None,
            idempotency_query: None,
            max_connections_per_ip: 64,
            data_timeout: "60s",
        }
    }
}

/// A running ingest node and its topics.
pub struct Node {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub smtp: SocketAddr,
    pub smtps: SocketAddr,
    pub kafka: KafkaConfig,
    pub prefix: String,
    pub events: String,
    pub dir: tempfile::TempDir,
    /// The node's metrics (docs/metrics.md).
    pub metrics: std::sync::Arc<sluice_ingest::metrics::IngestMetrics>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), sluice_ingest::IngestError>>>,
}

static KAFKA: OnceLock<()> = OnceLock::new();

/// The test cluster, or a panic that names it and says how to start it.
pub async fn reachable_kafka() -> KafkaConfig {
    let config = KafkaConfig::from_env("sluice-ingest-test");
    if KAFKA.get().is_none() {
        if let Err(err) = probe(&config, Duration::from_secs(10)).await {
            panic!("these tests need a running Kafka broker. {err}");
        }
        let _ = KAFKA.set(());
    }
    config
}

pub async fn start(options: Options) -> Node {
    let kafka = reachable_kafka().await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("sluice.test.{id}.outbound.");
    let events = format!("sluice.test.{id}.events");
    if options.brokers.is_none() {
        for topic in [
            format!("{prefix}shared"),
            format!("{prefix}transactional"),
            events.clone(),
        ] {
            create_topic(&kafka, &topic, 1).await.expect("create topic");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    make_keys(dir.path());
    let brokers = options
        .brokers
        .clone()
        .unwrap_or_else(|| kafka.brokers.clone());
    let config = IngestConfig::from_toml(&config_toml(
        &options,
        &brokers,
        &prefix,
        &events,
        dir.path(),
    ))
    .expect("test config is valid");
    let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
    let (grpc, http, smtp, smtps) = (bind().await, bind().await, bind().await, bind().await);
    let addr = |l: &TcpListener| l.local_addr().expect("addr");
    let (grpc_addr, http_addr, smtp_addr, smtps_addr) =
        (addr(&grpc), addr(&http), addr(&smtp), addr(&smtps));
    let listeners = IngestListeners {
        grpc: Some(grpc),
        http: Some(http),
        smtp_submission: Some(smtp),
        smtp_implicit_tls: Some(smtps),
        metrics: None,
    };
    let stop = CancellationToken::new();
    let backends = sluice_ingest::IngestBackends::open(&config).expect("backends");
    let metrics = backends.metrics.clone();
    let task = tokio::spawn(sluice_ingest::run(
        listeners,
        config,
        backends,
        stop.clone(),
    ));
    Node {
        grpc: grpc_addr,
        http: http_addr,
        smtp: smtp_addr,
        smtps: smtps_addr,
        kafka,
        prefix,
        events,
        dir,
        metrics,
        stop,
        task: Some(task),
    }
}

impl Node {
    pub fn outbound(&self, pool: &str) -> String {
        format!("{}{pool}", self.prefix)
    }

    /// Stops the node and checks it shut down cleanly.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("node stops within 20 s")
                .expect("node task");
            result.expect("node ran without error");
        }
    }

    /// Reads exactly `n` envelopes from `pool`'s topic.
    pub async fn envelopes(&self, pool: &str, n: usize) -> Vec<Envelope> {
        read(&self.kafka, &self.outbound(pool), n)
            .await
            .iter()
            .map(|bytes| Envelope::decode(bytes.as_slice()).expect("envelope"))
            .collect()
    }

    /// Reads exactly `n` events.
    pub async fn events(&self, n: usize) -> Vec<Event> {
        read(&self.kafka, &self.events, n)
            .await
            .iter()
            .map(|bytes| Event::decode(bytes.as_slice()).expect("event"))
            .collect()
    }

    /// DNS TXT records of the test keys, as dkimpy would look them up.
    pub fn dns_records(&self) -> PathBuf {
        self.dir.path().join("dns.json")
    }
}

/// Reads the first `n` records of a single-partition topic.
pub async fn read(kafka: &KafkaConfig, topic: &str, n: usize) -> Vec<Vec<u8>> {
    let group = format!("sluice-ingest-test-{}", uuid::Uuid::new_v4().simple());
    let consumer: StreamConsumer = kafka.consumer(&group).create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut records = Vec::new();
    while records.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {n} records on {topic} within 30 s",
            records.len()
        );
        if let Ok(message) = tokio::time::timeout(left, consumer.recv()).await {
            let message = message.expect("consume");
            records.push(message.payload().unwrap_or_default().to_vec());
        }
    }
    records
}

fn config_toml(options: &Options, brokers: &str, prefix: &str, events: &str, dir: &Path) -> String {
    // The Query service of sluice_testkit::query takes its node token.
    let token = || {
        let file = sluice_testkit::query::token_file(dir, sluice_testkit::query::NODE_TOKEN);
        file.display().to_string()
    };
    let suppressions = match &options.suppressions_query {
        Some((addr, timeout_ms)) => format!(
            "[suppressions]\nquery_addr = \"{addr}\"\ntimeout = \"{timeout_ms}ms\"\ntoken_file = \"{}\"\n",
            token()
        ),
        None => String::new(),
    };
    let idempotency = match &options.idempotency_query {
        Some(addr) => format!(
            "[idempotency]\nquery_addr = \"{addr}\"\ntoken_file = \"{}\"\n",
            token()
        ),
        None => String::new(),
    };
    format!(
        r#"
pools = ["shared", "transactional"]

{suppressions}

{idempotency}

[kafka]
brokers = "{brokers}"
outbound_topic_prefix = "{prefix}"
events_topic = "{events}"
publish_timeout = "{timeout}ms"
max_queued_records = {queued}

[limits]
max_message_bytes = {max_bytes}
signing_threads = 2
max_connections_per_ip = {per_ip}

[smtp]
hostname = "ingest.test"
idle_timeout = "30s"
data_timeout = "{data_timeout}"

[unsubscribe]
base_url = "https://unsub.test/u"
secret = "{UNSUBSCRIBE_SECRET}"

[tracking]
base_url = "{TRACKING_BASE}"

[[tenants]]
name = "acme"
api_keys = ["{acme_key}"]
smtp_users = [{{ username = "{user}", password_hash = "{password}" }}]
default_pool = "shared"
bounce_domain = "bounces.acme.example"
tracking = true
suppressed = ["{suppressed}"]
domains = [
  {{ name = "acme.example", dkim_selector = "rsa1", dkim_private_key_file = "{dir}/rsa.pem" }},
  {{ name = "ed.acme.example", dkim_selector = "ed1", dkim_algorithm = "ed25519-sha256", dkim_private_key_file = "{dir}/ed.pem" }},
]

[[tenants]]
name = "globex"
api_keys = ["{globex_key}"]
default_pool = "shared"
rate_quota = {quota}
domains = [{{ name = "globex.example" }}]
"#,
        timeout = options.publish_timeout_ms,
        queued = options.max_queued_records,
        max_bytes = options.max_message_bytes,
        per_ip = options.max_connections_per_ip,
        data_timeout = options.data_timeout,
        acme_key = hash_secret(ACME_KEY),
        user = SMTP_USER,
        password = hash_password(SMTP_PASSWORD),
        suppressed = SUPPRESSED,
        dir = dir.display(),
        globex_key = hash_secret(GLOBEX_KEY),
        quota = options.globex_quota,
    )
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("these tests need the `openssl` command to make DKIM keys");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// RSA-2048 and Ed25519 keys, and the DNS records dkimpy will see.
fn make_keys(dir: &Path) {
    let rsa = dir.join("rsa.pem");
    let ed = dir.join("ed.pem");
    let path = |p: &Path| p.to_str().expect("utf8 path").to_owned();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &path(&rsa),
    ]);
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", &path(&ed)]);
    let rsa_public = openssl(&["pkey", "-in", &path(&rsa), "-pubout", "-outform", "DER"]);
    let ed_public = openssl(&["pkey", "-in", &path(&ed), "-pubout", "-outform", "DER"]);
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let records = serde_json::json!({
        "rsa1._domainkey.acme.example.": format!("v=DKIM1; k=rsa; p={}", b64(&rsa_public)),
        "ed1._domainkey.ed.acme.example.": format!("v=DKIM1; k=ed25519; p={}", b64(&ed_public[ed_public.len() - 32..])),
    });
    std::fs::write(dir.join("dns.json"), records.to_string()).expect("write dns.json");
}

const VERIFY_PY: &str = r#"
import json, sys, dkim
records = json.load(open(sys.argv[1]))
def dnsfunc(name, timeout=5):
    value = records.get(name.decode())
    return value.encode() if value else None
failed = 0
for path in sys.argv[2:]:
    ok = dkim.verify(open(path, "rb").read(), dnsfunc=dnsfunc)
    print(("ok " if ok else "FAIL ") + path)
    failed += 0 if ok else 1
sys.exit(1 if failed else 0)
"#;

/// Makes sure dkimpy (and PyNaCl for Ed25519) is importable, installing it
/// with pip when missing; fails with a clear message otherwise.
fn ensure_dkimpy() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let importable = || {
            Command::new("python3")
                .args(["-c", "import dkim, nacl"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if importable() {
            return;
        }
        for extra in [&[][..], &["--break-system-packages"][..]] {
            let _ = Command::new("python3")
                .args([
                    "-m", "pip", "install", "--user", "--quiet", "dkimpy", "pynacl",
                ])
                .args(extra)
                .status();
            if importable() {
                return;
            }
        }
        panic!(
            "the DKIM tests need dkimpy and PyNaCl as the independent verifier and could not \
             install them: run `python3 -m pip install dkimpy pynacl`"
        );
    });
}

/// Verifies every message with dkimpy; returns its report on failure.
pub fn dkimpy_verify(node: &Node, messages: &[Vec<u8>]) -> Result<(), String> {
    ensure_dkimpy();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("verify.py");
    std::fs::write(&script, VERIFY_PY).expect("write script");
    let mut args = vec![script.clone(), node.dns_records()];
    for (i, message) in messages.iter().enumerate() {
        let path = dir.path().join(format!("message-{i}.eml"));
        std::fs::write(&path, message).expect("write message");
        args.push(path);
    }
    let output = Command::new("python3")
        .args(&args)
        .output()
        .expect("run python3");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A header's value in a message (first occurrence, unfolded).
pub fn header(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let head = text
        .split("\r\n\r\n")
        .next()?
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}
