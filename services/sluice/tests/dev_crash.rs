//! `sluice dev` killed with -9 loses no accepted message: the real binary on
//! its embedded store takes mail over gRPC while it delivers slowly to the
//! ISP simulator, is killed mid-run, and is started again on the same data
//! directory. Every recipient whose submission was acknowledged must reach
//! the simulator; the run reports how many arrived twice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sluice_proto::v1::SendRequest;
use sluice_proto::v1::ingest_client::IngestClient;
use sluice_testkit::dev::{dev_config, send_request, start_dev};
use sluice_testkit::sender::{arrivals, start_sim};

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

/// Tables added to the common dev config: a slow path, a small in-flight window.
const EXTRA: &str = r#"
[sender.queues]
max_in_flight = 200
[sender.shaping.limits.sites.slowmail]
messages_per_minute = 2400
burst = 5
max_connections = 2
"#;

fn request(batch: usize) -> tonic::Request<SendRequest> {
    let to: Vec<String> = (0..PER_REQUEST)
        .map(|i| format!("u{batch}x{i}@slow.test"))
        .collect();
    send_request("crash@sluice.test", &to, &format!("crash test {batch}"))
}

/// Recipients the simulator holds, with how many times each arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_dev_killed_with_sigkill_loses_no_accepted_message() {
    let sim = start_sim(SCENARIO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    let config = dev_config(dir.path(), &sim, "slowmail", "slow.test", EXTRA);
    std::fs::write(&file, config).expect("write config");

    let first = start_dev(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &file).await;
    let mut dev = first.child;
    let mut client = IngestClient::connect(first.ingest)
        .await
        .expect("connect ingest");
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

    let mut dev = start_dev(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &file)
        .await
        .child;
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
