//! `sluice dev` relaying to the sink, fed over gRPC `SendBatch` with
//! distinct one-recipient raw messages, DKIM-signed (RSA-2048) when the
//! From domain has a key.

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
    dev: sluice_testkit::dev::Dev,
    dir: PathBuf,
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.dev.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Sluice {
    /// Starts `binary dev` on a fresh data directory under `work`,
    /// delivering everything to 127.0.0.1:`sink` over `connections`.
    pub async fn start(
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
        let dev = sluice_testkit::dev::start_dev(binary, &file).await;
        Ok(Self { dev, dir })
    }

    pub fn pid(&self) -> u32 {
        self.dev.child.id().unwrap_or(0)
    }

    /// Submits `messages` of about `size` bytes from `domain`, `streams`
    /// concurrent `SendBatch` calls of `batch` messages at a time; returns
    /// when the last call was answered (every record durable).
    pub async fn feed(
        &self,
        (messages, size, domain): (usize, usize, &str),
        (streams, batch): (usize, usize),
    ) -> anyhow::Result<Instant> {
        let client = IngestClient::connect(self.dev.ingest.clone())
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

fn config(dir: &Path, key: &Path, sink: u16, connections: usize) -> String {
    let tenant = format!(
        r#"[[ingest.tenants]]
name = "bench"
api_keys = ["{hash}"]
default_pool = "default"
domains = [
  {{ name = "{SIGNED}", dkim_selector = "s1", dkim_private_key_file = "{key}" }},
  {{ name = "{UNSIGNED}" }},
]"#,
        hash = sluice_node::secret::hash_secret(KEY),
        key = key.display(),
    );
    sluice_testkit::dev::sink_dev_config(dir, sink, connections, &tenant)
}
