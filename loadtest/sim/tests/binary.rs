//! The `sluice-sim` binary: prints its addresses, serves until SIGTERM, then
//! prints the table and writes the JSON report.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{code, connect, ip, message, smtplib};
use serde_json::json;
use sluice_sim::Report;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{ChildStdout, Command};
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_sluice-sim");

async fn listening_addr(stdout: &mut BufReader<ChildStdout>) -> SocketAddr {
    let mut line = String::new();
    let read = timeout(Duration::from_secs(20), stdout.read_line(&mut line)).await;
    read.expect("sluice-sim printed its address in time")
        .expect("read stdout");
    let addr = line.trim().strip_prefix("listening provider=small addr=");
    let addr = addr.unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    addr.parse().expect("an address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_until_sigterm_then_reports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = dir.path().join("scenario.toml");
    let report = dir.path().join("report.json");
    let toml =
        "[[provider]]\nname = \"small\"\nlisten = \"127.0.0.3:0\"\ndomains = [\"small.test\"]\n";
    std::fs::write(&scenario, toml).expect("write scenario");
    let mut child = Command::new(BIN)
        .arg("--scenario")
        .arg(&scenario)
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start sluice-sim");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let addr = listening_addr(&mut stdout).await;

    let results = smtplib(json!([
        connect(addr, "127.0.0.40"),
        {"op": "ehlo"},
        message("bin@origin.test", "u@small.test"),
        {"op": "quit"},
    ]))
    .await;
    assert_eq!(code(&results[2]), 250, "{results:?}");

    let pid = child.id().expect("still running").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await;
    assert!(killed.expect("run kill").success());
    let status = timeout(Duration::from_secs(20), child.wait()).await;
    assert!(
        status
            .expect("exits after SIGTERM")
            .expect("wait")
            .success()
    );
    let mut table = String::new();
    stdout.read_to_string(&mut table).await.expect("read table");
    assert!(table.contains("127.0.0.40"), "{table}");
    assert!(table.contains("messages accepted: 1"), "{table}");

    let json = std::fs::read_to_string(&report).expect("report written");
    let report: Report = serde_json::from_str(&json).expect("report is JSON");
    assert_eq!(report.messages[0].message_id, "<bin@origin.test>");
    assert_eq!(report.messages[0].source_ip, ip("127.0.0.40"));
}

#[tokio::test]
async fn help_explains_the_addresses_and_the_report() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .await
        .expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "--scenario <FILE>",
        "--report <FILE>",
        "listening provider=",
        "SIGTERM",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}: {help}");
    }
}

#[tokio::test]
async fn bad_scenario_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = dir.path().join("bad.toml");
    let text = "[[provider]]\nname = \"x\"\nlisten = \"127.0.0.3:0\"\ndomains = []\ncolour = 1\n";
    std::fs::write(&scenario, text).expect("write scenario");
    let out = Command::new(BIN)
        .arg("--scenario")
        .arg(&scenario)
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `colour`"), "{err}");
}
