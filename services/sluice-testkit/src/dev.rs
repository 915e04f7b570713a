//! The real `sluice dev` binary under test: a config on 127.0.0.1:0
//! listeners routing one domain to a simulated provider, starting the binary
//! and reading its endpoints, and a gRPC send with the dev key.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice_proto::v1::{Recipient, SendRequest, Template, send_request::Content};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A dev config in `dir/data` sending `domain` to `provider` of `sim` from
/// 127.0.0.40 (site named after the provider), every listener on port 0;
/// `extra` TOML tables are appended.
pub fn dev_config(
    dir: &Path,
    sim: &sluice_sim::SimHandle,
    provider: &str,
    domain: &str,
    extra: &str,
) -> String {
    let addr = sim.addr(provider).expect("provider bound");
    format!(
        r#"
{listeners}[sender.routes]
"{domain}" = ["{addr}"]
[sender.metrics]
listen = "127.0.0.1:0"
[[sender.shaping.ips]]
address = "127.0.0.40"
pool = "default"
[[sender.shaping.sites.rules]]
pattern = "{ip}"
site = "{provider}"
provider = "{provider}"
{extra}
"#,
        listeners = listeners(dir),
        ip = addr.ip(),
    )
}

/// The start every dev file here shares: a data directory under `dir`,
/// every listener on a free loopback port, no DNS.
pub fn listeners(dir: &Path) -> String {
    format!(
        r#"data_dir = "{}"
[control]
listen = "127.0.0.1:0"
[ingest.listen]
grpc = "127.0.0.1:0"
http = "127.0.0.1:0"
smtp_submission = ""
[recorder]
query_listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:0"
[inbound.http]
listen = "127.0.0.1:0"
[sender]
dns = false
"#,
        dir.join("data").display()
    )
}

/// A `sluice dev` file delivering every message for `sink.test` to
/// 127.0.0.1:`sink` ([`sink_sender_tables`]); `extra` is appended (e.g.
/// `[[ingest.tenants]]`).
pub fn sink_dev_config(dir: &Path, sink: u16, connections: usize, extra: &str) -> String {
    format!(
        "{}{}{extra}\n",
        listeners(dir),
        sink_sender_tables("sender.", sink, connections)
    )
}

/// The sender tables (each name starting with `prefix`: `sender.` in a
/// dev file, empty in a sender's own) that send everything for
/// `sink.test` to 127.0.0.1:`sink` over up to `connections` connections
/// from source IP 127.0.0.40 of pool `default`, with limits far above
/// what one machine sends.
pub fn sink_sender_tables(prefix: &str, sink: u16, connections: usize) -> String {
    format!(
        r#"[{prefix}queues]
max_in_flight = 20000
max_per_site = 20000
[{prefix}routes]
"sink.test" = ["127.0.0.1:{sink}"]
[{prefix}shaping.limits.default]
messages_per_second = 1000000
messages_per_minute = 60000000
burst = 1000
max_connections = {connections}
new_connections_per_minute = 100000
messages_per_connection = 1000000
[[{prefix}shaping.ips]]
address = "127.0.0.40"
pool = "default"
"#
    )
}

/// A running `sluice dev` and its gRPC URLs.
pub struct Dev {
    pub child: Child,
    pub ingest: String,
    /// `host:port` of ingest's HTTP listener.
    pub http: String,
    /// `host:port` of the inbound MX.
    pub inbound: String,
    /// `host:port` of the inbound role's link endpoints; empty when off.
    pub inbound_http: String,
    pub query: String,
    /// `host:port` of the embedded control service.
    pub control: String,
    /// `host:port` of SMTP submission; empty when the config turned it off.
    pub smtp: String,
}

/// Starts `binary dev --config FILE` (the test passes
/// `env!("CARGO_BIN_EXE_sluice")`) and reads the endpoints it prints.
pub async fn start_dev(binary: &Path, config: &Path) -> Dev {
    let mut child = Command::new(binary)
        .args(["dev", "--config"])
        .arg(config)
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start `sluice dev`");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ingest, mut query, mut control, mut http) = (None, None, None, None);
    let (mut inbound, mut smtp, mut inbound_http) = (None, String::new(), String::new());
    while ingest.is_none()
        || query.is_none()
        || control.is_none()
        || http.is_none()
        || inbound.is_none()
    {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .expect("`sluice dev` printed its endpoints within 60 s")
            .expect("read stdout")
            .expect("`sluice dev` exited before printing its endpoints");
        let url = |addr: &str| Some(format!("http://{}", addr.trim()));
        if let Some(addr) = line.trim().strip_prefix("ingest gRPC") {
            ingest = url(addr);
        } else if let Some(addr) = line.trim().strip_prefix("query gRPC") {
            query = url(addr);
        } else if let Some(addr) = line.trim().strip_prefix("inbound HTTP") {
            inbound_http = addr.trim().trim_start_matches("http://").to_owned();
        } else if let Some(addr) = line.trim().strip_prefix("inbound MX") {
            inbound = Some(addr.trim().to_owned());
        } else if let Some(addr) = line.trim().strip_prefix("ingest HTTP") {
            http = Some(addr.trim().trim_start_matches("http://").to_owned());
        } else if let Some(addr) = line.trim().strip_prefix("control gRPC") {
            control = Some(addr.trim().to_owned());
        } else if let Some(addr) = line.trim().strip_prefix("SMTP submission") {
            smtp = addr.trim().to_owned();
        }
    }
    // Keep draining stdout so the child never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Dev {
        child,
        ingest: ingest.unwrap_or_default(),
        http: http.unwrap_or_default(),
        inbound: inbound.unwrap_or_default(),
        inbound_http,
        query: query.unwrap_or_default(),
        control: control.unwrap_or_default(),
        smtp,
    }
}

/// A templated `Send` from `from` to `to`, authorized with the dev API key.
pub fn send_request(from: &str, to: &[String], subject: &str) -> tonic::Request<SendRequest> {
    let recipients = to
        .iter()
        .map(|a| Recipient {
            address: a.clone(),
            ..Default::default()
        })
        .collect();
    let mut request = tonic::Request::new(SendRequest {
        from: from.into(),
        recipients,
        content: Some(Content::Template(Template {
            subject: subject.into(),
            text: "Hello.".into(),
            ..Default::default()
        })),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        "Bearer sluice-dev-key".parse().expect("metadata"),
    );
    request
}

/// Tenant `dev`'s suppressions as control lists them, as (address, reason).
pub async fn suppressions(control: &mut sluice_control_client::Client) -> Vec<(String, String)> {
    let request = sluice_proto::v1::ListSuppressionsRequest {
        tenant: "dev".into(),
        ..Default::default()
    };
    let page = control.list_suppressions(request).await.expect("list");
    let page = page.into_inner().suppressions;
    page.into_iter().map(|s| (s.address, s.reason)).collect()
}

/// Waits until tenant `dev`'s suppressions are `expected` (in any order),
/// at most `within`; how long it took.
pub async fn wait_for_suppressions(
    control: &mut sluice_control_client::Client,
    expected: &[(&str, &str)],
    within: Duration,
) -> Duration {
    let mut expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, r)| ((*a).to_owned(), (*r).to_owned()))
        .collect();
    expected.sort();
    let started = Instant::now();
    loop {
        let mut now = suppressions(control).await;
        now.sort();
        if now == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "suppressions after {within:?}: {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
