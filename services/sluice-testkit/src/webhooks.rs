//! The webhook receiver of docs/examples (`webhook_receiver.py`, Python's
//! standard library: written by this project, but verifying signatures
//! with nothing of the dispatcher's code) and what it kept.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The receiver's secret: it reads `dir/hook.secret`.
pub const SECRET: &str = "a-test-secret-of-thirty-two-chars";

/// Starts the example receiver on `port`, keeping verified events in
/// `dir/events.jsonl` and refusing its first `fail_first` posts (503);
/// returns once it listens.
pub async fn receiver(dir: &Path, port: u16, fail_first: u32) -> Child {
    std::fs::write(dir.join("hook.secret"), format!("{SECRET}\n")).expect("write the secret");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/webhook_receiver.py"
    );
    let child = Command::new("python3")
        .arg(script)
        .args(["--port", &port.to_string()])
        .args(["--fail-first", &fail_first.to_string()])
        .arg("--secret-file")
        .arg(dir.join("hook.secret"))
        .arg("--out")
        .arg(dir.join("events.jsonl"))
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the example receiver (deploy/test.sh installs it)");
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    crate::cluster::wait_listening(addr, "the webhook receiver", Duration::from_secs(20)).await;
    child
}

/// The events the receiver kept (each verified), in arrival order.
pub fn received(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Distinct ids of the kept events of `kind` (`None`: every kind).
pub fn ids(dir: &Path, kind: Option<&str>) -> BTreeSet<String> {
    received(dir)
        .iter()
        .filter(|e| kind.is_none_or(|k| e["type"] == k))
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Tenant `dev` registers the receiver on `port` as webhook `id` for the
/// event kinds `events` through ingest's HTTP API at `http`.
pub async fn register(http: &str, id: &str, port: u16, events: &[&str]) {
    let hook = serde_json::json!({
        "url": format!("http://127.0.0.1:{port}/hook"),
        "events": events,
        "secret": SECRET,
    });
    let headers = [
        "authorization: Bearer sluice-dev-key",
        "content-type: application/json",
    ];
    let path = format!("/v1/webhooks/{id}");
    let body = hook.to_string();
    let answer = crate::http::request(http, "PUT", &path, &headers, body.as_bytes()).await;
    assert_eq!(crate::http::status(&answer), 200, "{answer}");
}
