//! Raising a throttled site's limit in control releases its parked mail at
//! once, also across a `kill -9`: `sluice dev` holds a site to 6 messages a
//! minute behind a ready queue of 5, so most of 60 messages overflow and
//! are parked by the site's drain rate for up to 10 minutes, many of them in
//! the 5-minute delay tier. Without waking, that mail could not come back
//! before its slot. The site's policy is raised to one a second; the node is
//! killed with -9 partway through the drain and started again; every
//! message must arrive within a bound far below the 5-minute tier, once
//! (bar the few in flight at the kill), with no limit violation.

use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{ListSitePoliciesRequest, SitePolicy};
use sluice_testkit::dev::{dev_config, send_request, start_dev};
use sluice_testkit::sender::{arrivals, start_sim, wait_for_arrivals};

const SCENARIO: &str = r#"
seed = 21

[[provider]]
name = "slow"
listen = "127.0.0.2:0"
domains = ["slow.test"]
[provider.limits]
messages_per_minute = 600
"#;

const EXTRA: &str = r#"
[sender.queues]
max_per_site = 5
overflow_delay = "2s"
max_overflow_hold = "10m"
[sender.shaping.retry]
tiers = ["2s", "30s", "5m"]
[sender.shaping.limits.sites.slow]
messages_per_minute = 6
burst = 1
max_connections = 1
"#;

const MESSAGES: usize = 60;
/// The most a message may take to arrive once the limit is raised, or once
/// the node is back: far below the 5-minute tier it would otherwise sit in.
const DRAIN_BOUND: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_limit_releases_parked_mail_at_once_and_after_a_kill() {
    let sim = start_sim(SCENARIO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    std::fs::write(
        &file,
        dev_config(dir.path(), &sim, "slow", "slow.test", EXTRA),
    )
    .expect("config");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_sluice"));
    let dev = start_dev(binary, &file).await;
    let mut ingest = IngestClient::connect(dev.ingest.clone())
        .await
        .expect("ingest");
    for i in 0..MESSAGES {
        let to = vec![format!("user{i}@slow.test")];
        ingest
            .send(send_request("dev@sluice.test", &to, "wake"))
            .await
            .expect("accepted");
    }
    // At 6 a minute, 4 sent take 30 s: by then the rest is parked by the
    // measured rate, up to 10 minutes ahead.
    wait_for_arrivals(&sim, 4, Duration::from_secs(90), "before the raise").await;
    let before = arrivals(&sim.snapshot()).len();
    assert!(
        before <= 8,
        "the site sent {before}, past its limit of 6 a minute"
    );

    let token = std::fs::read_to_string(dir.path().join("data/control.token")).expect("token");
    let control = format!("http://{}", dev.control);
    let mut admin = sluice_control_client::client(&control, Some(token.trim()))
        .await
        .expect("control");
    let policies = admin
        .list_site_policies(ListSitePoliciesRequest {})
        .await
        .expect("list")
        .into_inner()
        .policies;
    let old = policies
        .into_iter()
        .find(|p| p.site == "slow")
        .expect("the dev file's site policy is in control");
    admin
        .put_site_policy(SitePolicy {
            messages_per_minute: 60,
            burst: 1,
            ..old
        })
        .await
        .expect("raise");
    let raised = Instant::now();

    // Kill -9 partway through the drain.
    wait_for_arrivals(&sim, before + 15, DRAIN_BOUND, "after the raise").await;
    let mut child = dev.child;
    child.start_kill().expect("kill -9");
    child.wait().await.expect("reaped");
    let at_kill = arrivals(&sim.snapshot()).len();
    assert!(
        at_kill < MESSAGES,
        "the kill came too late to test the restart ({at_kill} out)"
    );
    println!(
        "{before} before the raise, {at_kill} when killed {:?} after it",
        raised.elapsed()
    );

    let dev = start_dev(binary, &file).await;
    let restarted = Instant::now();
    wait_for_arrivals(&sim, MESSAGES, DRAIN_BOUND, "after the restart").await;
    let drained = restarted.elapsed();
    drop(dev);
    let seen = arrivals(&sim.snapshot());
    let twice = seen.values().filter(|&&n| n > 1).count();
    println!("all {MESSAGES} out {drained:?} after the restart; {twice} arrived twice");
    let report = sim.shutdown().await;
    assert_eq!(report.total_violations(), 0, "limit violations:\n{report}");
    assert!(
        twice <= 2,
        "{twice} messages arrived twice: more than the deliveries in flight at the kill"
    );
}
