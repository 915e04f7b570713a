//! Sluice relaying to the sink — `sluice dev`, or `sluice ingest` and
//! `sluice sender` as separate processes on Kafka — fed over gRPC
//! `SendBatch` with distinct one-recipient raw messages, DKIM-signed
//! (RSA-2048) when the From domain has a key.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use futures::future::try_join_all;
use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{Recipient, SendRequest, send_request};

const KEY: &str = "peer-bench-api-key";
/// From domain with an RSA-2048 key.
pub const SIGNED: &str = "signed.bench.test";
/// From domain without a key.
pub const UNSIGNED: &str = "plain.bench.test";

pub struct Sluice {
    /// The processes: `sluice dev`, or ingest and sender.
    children: Vec<tokio::process::Child>,
    /// Ingest's gRPC URL.
    ingest: String,
    dir: PathBuf,
}

impl Drop for Sluice {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Sluice {
    /// Starts `binary dev` on a fresh data directory under `work`,
    /// delivering everything to 127.0.0.1:`sink` over `connections`.
    pub async fn start_dev(
        binary: &Path,
        work: &Path,
        sink: u16,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let dir = work.join(format!("sluice-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let key = dkim_key(&dir)?;
        let file = dir.join("dev.toml");
        std::fs::write(&file, config(&dir, &key, sink, connections))?;
        let mut dev = sluice_testkit::dev::start_dev(binary, &file).await;
        let ingest = std::mem::take(&mut dev.ingest);
        Ok(Self {
            children: vec![dev.child],
            ingest,
            dir,
        })
    }

    /// Starts `binary ingest` and `binary sender` on the Kafka at
    /// `brokers`, with topics and a consumer group of their own.
    pub async fn start_kafka(
        binary: &Path,
        work: &Path,
        brokers: &str,
        (sink, connections): (u16, usize),
    ) -> anyhow::Result<Self> {
        use sluice_testkit::cluster::{free_addr, spawn_role, wait_listening};
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = work.join(format!("sluice-{id}"));
        std::fs::create_dir_all(&dir)?;
        let key = dkim_key(&dir)?;
        let topics = Topics::new(&id);
        let grpc = free_addr();
        let ingest_file = dir.join("ingest.toml");
        std::fs::write(&ingest_file, ingest_config(grpc, brokers, &topics, &key))?;
        let sender_file = dir.join("sender.toml");
        std::fs::write(
            &sender_file,
            sender_config(brokers, &topics, sink, connections),
        )?;
        let binary = binary.to_str().context("binary path is not UTF-8")?;
        let ingest = spawn_role(binary, "ingest", &ingest_file, &[], "warn");
        let sender = spawn_role(binary, "sender", &sender_file, &[], "warn");
        wait_listening(grpc, "sluice ingest", std::time::Duration::from_secs(60)).await;
        Ok(Self {
            children: vec![ingest, sender],
            ingest: format!("http://{grpc}"),
            dir,
        })
    }

    /// The processes to account.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|c| c.id()).collect()
    }

    /// Submits `messages` of about `size` bytes from `domain`, `streams`
    /// concurrent `SendBatch` calls of `batch` messages at a time; returns
    /// when the last call was answered (every record durable).
    pub async fn feed(
        &self,
        (messages, size, domain): (usize, usize, &str),
        (streams, batch): (usize, usize),
    ) -> anyhow::Result<Instant> {
        let client = IngestClient::connect(self.ingest.clone())
            .await
            .context("connect to sluice dev's ingest")?
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let body = body(size);
        let per_stream = messages.div_ceil(streams);
        let workers = (0..streams).map(|w| {
            let (mut client, body) = (client.clone(), body.clone());
            async move {
                let range = (w * per_stream)..((w + 1) * per_stream).min(messages);
                let indexes: Vec<usize> = range.collect();
                for chunk in indexes.chunks(batch) {
                    let requests: Vec<SendRequest> =
                        chunk.iter().map(|i| message(*i, domain, &body)).collect();
                    let request = sluice_testkit::with_key(futures::stream::iter(requests), KEY);
                    client.send_batch(request).await?;
                }
                Ok::<_, tonic::Status>(())
            }
        });
        try_join_all(workers).await.context("SendBatch")?;
        Ok(Instant::now())
    }
}

/// A message body of about `size` bytes: 76-character lines.
fn body(size: usize) -> String {
    let line = format!("{}\r\n", "x".repeat(76));
    line.repeat(size.saturating_sub(300) / line.len() + 1)
}

fn message(i: usize, domain: &str, body: &str) -> SendRequest {
    let to = format!("user{i}@sink.test");
    let raw = format!(
        "From: Bench <bench@{domain}>\r\nTo: <{to}>\r\nSubject: peer bench {i}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         message {i}\r\n{body}"
    );
    SendRequest {
        from: format!("bench@{domain}"),
        recipients: vec![Recipient {
            address: to,
            ..Default::default()
        }],
        content: Some(send_request::Content::Raw(raw.into_bytes())),
        ..Default::default()
    }
}

fn dkim_key(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("dkim.pem");
    let status = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&path)
        .arg("2048")
        .stderr(std::process::Stdio::null())
        .status()
        .context("run openssl genrsa")?;
    anyhow::ensure!(status.success(), "openssl genrsa failed: {status}");
    Ok(path)
}

fn tenant(key: &Path, table: &str) -> String {
    format!(
        r#"[[{table}]]
name = "bench"
api_keys = ["{hash}"]
default_pool = "default"
domains = [
  {{ name = "{SIGNED}", dkim_selector = "s1", dkim_private_key_file = "{key}" }},
  {{ name = "{UNSIGNED}" }},
]"#,
        hash = sluice_node::secret::hash_secret(KEY),
        key = key.display(),
    )
}

fn config(dir: &Path, key: &Path, sink: u16, connections: usize) -> String {
    let tenant = tenant(key, "ingest.tenants");
    sluice_testkit::dev::sink_dev_config(dir, sink, connections, &tenant)
}

/// Topic names of one Kafka run.
struct Topics {
    prefix: String,
    events: String,
    group: String,
}

impl Topics {
    fn new(id: &str) -> Self {
        Self {
            prefix: format!("sluice.bench.{id}.outbound."),
            events: format!("sluice.bench.{id}.events"),
            group: format!("sluice-bench-{id}"),
        }
    }
}

fn ingest_config(grpc: std::net::SocketAddr, brokers: &str, t: &Topics, key: &Path) -> String {
    format!(
        "pools = [\"default\"]\n\
         [listen]\ngrpc = \"{grpc}\"\nhttp = \"\"\nsmtp_submission = \"\"\nsmtp_implicit_tls = \"\"\n\
         [kafka]\nbrokers = \"{brokers}\"\noutbound_topic_prefix = \"{prefix}\"\nevents_topic = \"{events}\"\n\
         [unsubscribe]\nbase_url = \"https://u.bench.test/u\"\nsecret = \"peer-bench-secret-peer-bench-secret\"\n\
         {tenant}\n",
        prefix = t.prefix,
        events = t.events,
        tenant = tenant(key, "tenants"),
    )
}

fn sender_config(brokers: &str, t: &Topics, sink: u16, connections: usize) -> String {
    format!(
        "node = \"bench\"\npool = \"default\"\ndns = false\n\
         [kafka]\nbrokers = \"{brokers}\"\noutbound_topic = \"{prefix}default\"\nevents_topic = \"{events}\"\ngroup = \"{group}\"\n\
         {tables}",
        prefix = t.prefix,
        events = t.events,
        group = t.group,
        tables = sluice_testkit::dev::sink_sender_tables("", sink, connections),
    )
}
