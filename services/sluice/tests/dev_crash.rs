//! `sluice dev` killed with -9 loses no accepted message: the real binary on
//! its embedded store takes mail over gRPC while it delivers slowly to the
//! ISP simulator, is killed mid-run, and is started again on the same data
//! directory. Every recipient whose submission was acknowledged must reach
//! the simulator; the run reports how many arrived twice.

#[path = "../../sluice-sender/tests/common/mod.rs"]
mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::start_sim;
use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{Recipient, SendRequest, Template, send_request::Content};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SCENARIO: &str = r#"
seed = 11

[[provider]]
name = "slowmail"
listen = "127.0.0.2:0"
domains = ["slow.test"]
[provider.limits]
connections_per_ip = 2
messages_per_minute = 6000
"#;

/// Recipients per request, and requests submitted before the kill.
const PER_REQUEST: usize = 20;
const REQUESTS: usize = 40;

fn config(dir: &Path, sim: &sluice_sim::SimHandle) -> String {
    let addr = sim.addr("slowmail").expect("provider bound");
    format!(
        r#"
data_dir = "{data}"
[control]
listen = "127.0.0.1:0"
[ingest.listen]
grpc = "127.0.0.1:0"
http = "127.0.0.1:0"
smtp_submission = ""
[recorder]
query_listen = "127.0.0.1:0"
[sender]
dns = false
[sender.routes]
"slow.test" = ["{addr}"]
[sender.metrics]
listen = "127.0.0.1:0"
[sender.queues]
max_in_flight = 200
[[sender.shaping.ips]]
address = "127.0.0.40"
pool = "default"
[[sender.shaping.sites.rules]]
pattern = "{ip}"
site = "slowmail"
provider = "slowmail"
[sender.shaping.limits.sites.slowmail]
messages_per_minute = 2400
burst = 5
max_connections = 2
"#,
        data = dir.join("data").display(),
        ip = addr.ip(),
    )
}

/// Starts `sluice dev --config FILE` and reads its ingest gRPC address from
/// what it prints.
async fn start_dev(config: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
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
    loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .expect("`sluice dev` printed its endpoints within 60 s")
            .expect("read stdout")
            .expect("`sluice dev` exited before printing its endpoints");
        if let Some(addr) = line.trim().strip_prefix("ingest gRPC") {
            let addr = format!("http://{}", addr.trim());
            // Keep draining stdout so the child never blocks on it.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, addr);
        }
    }
}

fn request(batch: usize) -> tonic::Request<SendRequest> {
    let recipients = (0..PER_REQUEST)
        .map(|i| Recipient {
            address: format!("u{batch}x{i}@slow.test"),
            ..Default::default()
        })
        .collect();
    let mut request = tonic::Request::new(SendRequest {
        from: "crash@sluice.test".into(),
        recipients,
        content: Some(Content::Template(Template {
            subject: format!("crash test {batch}"),
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

/// Recipients the simulator holds, with how many times each arrived.
fn arrivals(report: &sluice_sim::Report) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for m in &report.messages {
        for r in &m.recipients {
            *seen.entry(r.clone()).or_default() += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_dev_killed_with_sigkill_loses_no_accepted_message() {
    let sim = start_sim(SCENARIO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    std::fs::write(&file, config(dir.path(), &sim)).expect("write config");

    let (mut dev, grpc) = start_dev(&file).await;
    let mut client = IngestClient::connect(grpc).await.expect("connect ingest");
    let mut accepted: HashSet<String> = HashSet::new();
    for batch in 0..REQUESTS {
        let response = client.send(request(batch)).await.expect("accepted");
        for r in response.into_inner().recipients {
            accepted.insert(r.address);
        }
    }
    assert_eq!(accepted.len(), PER_REQUEST * REQUESTS);
    // Kill once some, not all, went out.
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals(&sim.snapshot()).len() < 50 {
        assert!(Instant::now() < deadline, "delivery never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dev.start_kill().expect("kill -9");
    dev.wait().await.expect("reaped");
    let before = arrivals(&sim.snapshot()).len();
    assert!(
        before < accepted.len(),
        "the kill came too late to test anything ({before} of {} out)",
        accepted.len()
    );

    let (mut dev, _) = start_dev(&file).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen = arrivals(&sim.snapshot());
        let missing = accepted.iter().filter(|a| !seen.contains_key(*a)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} accepted recipients never arrived after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    dev.start_kill().expect("stop");
    let report = sim.shutdown().await;
    let seen = arrivals(&report);
    let twice = seen.values().filter(|&&n| n > 1).count();
    println!(
        "{} accepted; {before} out before kill -9, all {} out after the restart; {twice} arrived twice",
        accepted.len(),
        accepted.len()
    );
    assert_eq!(report.total_violations(), 0, "limit violations:\n{report}");
    assert!(
        twice <= 200,
        "duplicates beyond the in-flight window (max_in_flight 200): {twice}"
    );
}
