//! Shared helpers of the integration tests: scenarios on port 0 and the
//! smtplib client in `tests/smtp_client.py`.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use sluice_sim::{Scenario, SimHandle, Simulator};

/// The script that drives Python's smtplib.
pub const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_client.py");

/// A one-provider scenario on 127.0.0.2, port 0, serving `example.test`.
pub fn scenario(style: &str, extra: &str) -> Scenario {
    let text = format!(
        "seed = 7\n[[provider]]\nname = \"isp\"\nstyle = \"{style}\"\n\
         listen = \"127.0.0.2:0\"\ndomains = [\"example.test\"]\n\
         unknown_users = [\"nobody\"]\n{extra}"
    );
    Scenario::parse(&text).expect("test scenario is valid")
}

/// Starts `scenario` and returns the handle and the provider's address.
pub async fn start(scenario: Scenario) -> (SimHandle, SocketAddr) {
    let sim = Simulator::start(scenario).await.expect("simulator starts");
    let addr = sim.addr("isp").expect("provider isp is bound");
    (sim, addr)
}

/// Runs the smtplib script with `steps`, off the async workers, and returns
/// one JSON result per step. Fails loudly when python3 cannot be run.
pub async fn smtplib(steps: Value) -> Vec<Value> {
    tokio::task::spawn_blocking(move || run_python(&steps))
        .await
        .expect("python runner thread")
}

fn run_python(steps: &Value) -> Vec<Value> {
    let mut child = Command::new("python3")
        .arg(CLIENT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("python3 is required: these tests use its smtplib as an independent SMTP client, but it could not be started: {err}")
        });
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(steps.to_string().as_bytes())
        .expect("write steps");
    drop(stdin);
    let out = child.wait_with_output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "smtp_client.py failed: {stderr}");
    serde_json::from_slice(&out.stdout).expect("smtp_client.py prints JSON")
}

/// The `connect` step from `source` to `addr`.
pub fn connect(addr: SocketAddr, source: &str) -> Value {
    json!({"op": "connect", "host": addr.ip().to_string(), "port": addr.port(), "source": source})
}

/// The `send_message` step: one message with this Message-ID to `to`.
pub fn message(id: &str, to: &str) -> Value {
    let text = format!(
        "From: sender@origin.test\r\nTo: {to}\r\nMessage-ID: <{id}>\r\nSubject: test\r\n\r\n.leading dot\r\nbody\r\n"
    );
    json!({"op": "send_message", "from": "sender@origin.test", "to": [to], "message": text})
}

/// The reply code of one step's result.
pub fn code(result: &Value) -> u64 {
    result["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("no reply code in {result}"))
}

/// The reply text of one step's result.
pub fn text(result: &Value) -> &str {
    result["message"].as_str().unwrap_or_default()
}

/// Parses `127.0.0.N`.
pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}
