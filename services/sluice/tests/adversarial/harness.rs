//! The target (the real `sluice dev` binary with two tenants, SMTP
//! submission and tight limits), the valid client that keeps sending
//! through every probe, and the bounds every probe is held to.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The dev tenant's API key (the built-in dev key).
pub const DEV_KEY: &str = "sluice-dev-key";
/// The other tenant's API key.
pub const RIVAL_KEY: &str = "rival-key-0123456789";
/// SMTP submission login of the dev tenant.
pub const SMTP_USER: &str = "submitter";
pub const SMTP_PASSWORD: &str = "correct horse battery staple";

/// Most a valid request may take while a probe runs (retries included).
pub const LATENCY_BOUND: Duration = Duration::from_secs(3);
/// Most the process's resident memory may grow during one probe.
pub const RSS_GROWTH_BOUND: u64 = 128 * 1024 * 1024;

pub const SCENARIO: &str = r#"
seed = 13

[[provider]]
name = "flow"
listen = "127.0.0.2:0"
domains = ["flow.test"]

[[provider]]
name = "strict"
listen = "127.0.0.3:0"
domains = ["strict.test"]
starttls = true
"#;

/// The running binary and where it listens.
pub struct Target {
    /// Held so the process is killed when the target is dropped.
    _child: Child,
    pub pid: u32,
    pub dir: tempfile::TempDir,
    pub sim: sluice_sim::SimHandle,
    pub ingest: String,
    pub http: SocketAddr,
    pub smtp: SocketAddr,
    pub query: String,
    pub control: String,
    /// `host:port` of the metrics endpoint (every role's metrics).
    pub metrics: String,
    /// The admin token dev generated for control and Query.
    pub token: String,
    /// Everything the binary printed on stdout.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Its log lines (stderr, `--log-format json`).
    pub stderr: Arc<Mutex<Vec<String>>>,
}

/// The dev config: limits small enough for probes to reach them quickly.
pub fn config(dir: &std::path::Path, sim: &sluice_sim::SimHandle, extra: &str) -> String {
    let flow = sim.addr("flow").expect("flow provider");
    let strict = sim.addr("strict").expect("strict provider");
    let dev_key = sluice_node::secret::hash_secret(DEV_KEY);
    let rival_key = sluice_node::secret::hash_secret(RIVAL_KEY);
    let password = sluice_node::secret::hash_password(SMTP_PASSWORD);
    format!(
        r#"
data_dir = "{data}"
[control]
listen = "127.0.0.1:0"
max_watchers = 6
[ingest.listen]
grpc = "127.0.0.1:0"
http = "127.0.0.1:0"
smtp_submission = "127.0.0.1:0"
[ingest.limits]
max_requests = 4
max_connections_per_ip = 16
body_timeout = "2s"
max_message_bytes = 1048576
[ingest.smtp]
idle_timeout = "4s"
[[ingest.tenants]]
name = "dev"
api_keys = ["{dev_key}"]
default_pool = "default"
domains = [{{ name = "sluice.test" }}]
smtp_users = [{{ username = "{SMTP_USER}", password_hash = "{password}" }}]
[[ingest.tenants]]
name = "rival"
api_keys = ["{rival_key}"]
default_pool = "default"
domains = [{{ name = "rival.test" }}]
[recorder]
query_listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:0"
[inbound.http]
listen = "127.0.0.1:0"
[sender]
dns = false
[sender.smtp]
require_tls_sites = ["strict"]
[sender.routes]
"flow.test" = ["{flow}"]
"strict.test" = ["{strict}"]
[sender.metrics]
listen = "127.0.0.1:0"
[[sender.shaping.ips]]
address = "0.0.0.0"
pool = "default"
[[sender.shaping.sites.rules]]
pattern = "{flow_ip}"
site = "flow"
provider = "flow"
[[sender.shaping.sites.rules]]
pattern = "{strict_ip}"
site = "strict"
provider = "strict"
{extra}
"#,
        data = dir.join("data").display(),
        flow_ip = flow.ip(),
        strict_ip = strict.ip(),
    )
}

impl Target {
    pub async fn start() -> Self {
        let sim = sluice_testkit::sender::start_sim(SCENARIO).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("dev.toml");
        std::fs::write(&file, config(dir.path(), &sim, "")).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--log-format", "json", "dev", "--config"])
            .arg(&file)
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start `sluice dev`");
        let pid = child.id().expect("pid");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        keep_lines(child.stderr.take().expect("stderr"), stderr.clone());
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let endpoints = read_endpoints(lines, stdout.clone()).await;
        let token = std::fs::read_to_string(dir.path().join("data/control.token"))
            .expect("dev's control.token")
            .trim()
            .to_owned();
        let addr = |name: &str| -> String {
            endpoints
                .iter()
                .find_map(|(k, v)| (k == name).then(|| v.clone()))
                .unwrap_or_else(|| panic!("`sluice dev` printed no {name} endpoint"))
        };
        Self {
            _child: child,
            pid,
            sim,
            ingest: format!("http://{}", addr("ingest gRPC")),
            http: addr("ingest HTTP")
                .trim_start_matches("http://")
                .parse()
                .expect("HTTP address"),
            smtp: addr("SMTP submission").parse().expect("SMTP address"),
            query: format!("http://{}", addr("query gRPC")),
            control: addr("control gRPC"),
            metrics: addr("metrics")
                .trim_start_matches("http://")
                .trim_end_matches("/metrics")
                .to_owned(),
            token,
            stdout,
            stderr,
            dir,
        }
    }

    /// Resident memory of the process, in bytes.
    pub fn rss(&self) -> u64 {
        rss_of(self.pid).expect("VmRSS of the running target")
    }
}

/// Keeps every line `from` writes.
fn keep_lines(
    from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    keep: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            keep.lock().expect("lines lock").push(line);
        }
    });
}

const NAMES: [&str; 6] = [
    "ingest gRPC",
    "ingest HTTP",
    "SMTP submission",
    "query gRPC",
    "control gRPC",
    "metrics",
];

/// Reads the banner until every endpoint is known; keeps reading (and
/// keeping) stdout afterwards.
async fn read_endpoints(
    mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    keep: Arc<Mutex<Vec<String>>>,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut found = Vec::new();
    while found.len() < NAMES.len() {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .expect("`sluice dev` printed its endpoints within 60 s")
            .expect("read stdout")
            .expect("`sluice dev` exited before printing its endpoints");
        keep.lock().expect("stdout lock").push(line.clone());
        for name in NAMES {
            if let Some(addr) = line.trim().strip_prefix(name) {
                found.push((name.to_owned(), addr.trim().to_owned()));
            }
        }
    }
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            keep.lock().expect("stdout lock").push(line);
        }
    });
    found
}

/// What the valid client saw: one entry per accepted send.
#[derive(Default)]
struct Seen {
    latencies: Vec<(Instant, Duration)>,
    failures: Vec<String>,
    accepted: Vec<String>,
}

/// A client sending one valid message every 50 ms for as long as it runs,
/// retrying "try later" answers with backoff, as a well-behaved client does.
pub struct Valid {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Valid {
    pub async fn start(target: &Target) -> Self {
        let mut client = IngestClient::connect(target.ingest.clone())
            .await
            .expect("connect ingest");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            for n in 0u64.. {
                let started = Instant::now();
                let outcome = send_valid(&mut client, n).await;
                record_outcome(&record, started, outcome);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { seen, task }
    }

    /// Latencies of sends started since `from`, and failures so far.
    pub fn since(&self, from: Instant) -> (Vec<Duration>, Vec<String>) {
        let seen = self.seen.lock().expect("seen lock");
        let latencies = seen
            .latencies
            .iter()
            .filter(|(at, _)| *at >= from)
            .map(|(_, d)| *d)
            .collect();
        (latencies, seen.failures.clone())
    }

    /// Stops sending; returns the ids of every accepted message.
    pub fn stop(self) -> Vec<String> {
        self.task.abort();
        let seen = self.seen.lock().expect("seen lock");
        seen.accepted.clone()
    }
}

fn record_outcome(seen: &Mutex<Seen>, started: Instant, outcome: Result<String, String>) {
    let mut seen = seen.lock().expect("seen lock");
    match outcome {
        Ok(id) => {
            seen.latencies.push((started, started.elapsed()));
            seen.accepted.push(id);
        }
        Err(err) => seen.failures.push(err),
    }
}

/// One valid templated send to flow.test; retries UNAVAILABLE and
/// RESOURCE_EXHAUSTED for up to 10 s.
async fn send_valid(
    client: &mut IngestClient<tonic::transport::Channel>,
    n: u64,
) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut backoff = Duration::from_millis(20);
    loop {
        let to = vec![format!("valid-{n}@flow.test")];
        let request = sluice_testkit::dev::send_request("app@sluice.test", &to, "valid");
        match client.send(request).await {
            Ok(response) => {
                let response = response.into_inner();
                return Ok(response.recipients[0].message_id.clone());
            }
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                ) && Instant::now() < deadline =>
            {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Err(status) => return Err(format!("valid send {n}: {status}")),
        }
    }
}

/// Runs `attack` while the valid client sends and the process's memory is
/// sampled; then holds the probe to the bounds: valid sends kept completing
/// within [`LATENCY_BOUND`], none failed, and memory grew less than
/// [`RSS_GROWTH_BOUND`].
pub async fn probe<F: std::future::Future<Output = ()>>(
    target: &Target,
    valid: &Valid,
    name: &str,
    attack: F,
) {
    let rss_before = target.rss();
    let started = Instant::now();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampler = {
        let (peak, pid) = (peak.clone(), target.pid);
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_of(pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    attack.await;
    // Let at least one valid send complete after the attack's last step.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sampler.abort();
    let (latencies, failures) = valid.since(started);
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "probe {name}: {:.1} s, {} valid sends, slowest {:?}, RSS {} MiB → peak {} MiB",
        started.elapsed().as_secs_f64(),
        latencies.len(),
        slowest,
        rss_before >> 20,
        peak >> 20
    );
    assert!(
        failures.is_empty(),
        "{name}: valid sends failed: {failures:?}"
    );
    assert!(
        !latencies.is_empty(),
        "{name}: no valid send completed during the probe"
    );
    assert!(
        slowest <= LATENCY_BOUND,
        "{name}: a valid send took {slowest:?} (bound {LATENCY_BOUND:?})"
    );
    assert!(
        peak.saturating_sub(rss_before) < RSS_GROWTH_BOUND,
        "{name}: resident memory grew from {} MiB to {} MiB",
        rss_before >> 20,
        peak >> 20
    );
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    kb.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}
