//! `sluice demo --messages 2000` end to end: the real binary runs `sluice
//! dev` and the ISP simulator, submits over gRPC, and must exit 0 with a
//! report that names every provider and every source IP.

use std::process::Stdio;
use std::time::{Duration, Instant};

const PROVIDERS: [&str; 4] = ["gmail", "yahoo", "outlook", "smallco"];
const SOURCE_IPS: [&str; 4] = ["127.0.0.20", "127.0.0.21", "127.0.0.22", "127.0.0.23"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_messages_pass_and_the_report_names_every_provider_and_ip() {
    let started = Instant::now();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--messages", "2000"])
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the sluice binary starts");
    let out = tokio::time::timeout(Duration::from_secs(150), child.wait_with_output())
        .await
        .expect("sluice demo --messages 2000 finishes within 150 s")
        .expect("sluice demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "sluice demo exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("PASS:"), "{stdout}");
    assert!(!stdout.contains("FAIL:"), "{stdout}");
    assert!(
        stdout.contains("accepted 2000 ·"),
        "every message accepted: {stdout}"
    );
    assert!(
        !stdout.contains('\u{1b}'),
        "no escape codes when stdout is not a terminal"
    );
    for provider in PROVIDERS {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("│ {provider} ")));
        assert!(row.is_some(), "no row for provider {provider}: {stdout}");
    }
    for ip in SOURCE_IPS {
        let row = stdout.lines().find(|l| l.starts_with(&format!("│ {ip} ")));
        assert!(row.is_some(), "no row for source IP {ip}: {stdout}");
    }
    let warming = stdout
        .lines()
        .filter(|l| l.contains("day 1: 80") && l.trim_end().ends_with("yes │"));
    assert_eq!(
        warming.count(),
        2,
        "both warming IPs held their cap: {stdout}"
    );
    println!("sluice demo --messages 2000 took {:.1?}", started.elapsed());
}
