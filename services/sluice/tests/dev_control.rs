//! `sluice dev`'s nodes follow its embedded control: the dev file's tenant,
//! pool and source IP are records in control after the first start, and
//! `sluice admin`-style calls change what ingest and the sender do while
//! dev runs — a paused tenant is refused, a paused source IP stops sending
//! and sends again once resumed.

use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{GetSnapshotRequest, Tenant};
use sluice_testkit::dev::{dev_config, send_request, start_dev};
use sluice_testkit::sender::start_sim;
use tonic::Code;

const SCENARIO: &str = r#"
seed = 3

[[provider]]
name = "steady"
listen = "127.0.0.2:0"
domains = ["steady.test"]
"#;

/// The effect of a change must be seen within this (aim: 2 s).
const EFFECT_BOUND: Duration = Duration::from_secs(6);

type Ingest = IngestClient<tonic::transport::Channel>;

async fn send(ingest: &mut Ingest, n: usize) -> Result<(), tonic::Status> {
    let to = vec![format!("user{n}@steady.test")];
    ingest
        .send(send_request("dev@sluice.test", &to, "dev control"))
        .await?;
    Ok(())
}

async fn wait_arrived(sim: &sluice_sim::SimHandle, count: usize, within: Duration) -> Duration {
    let start = Instant::now();
    while sim.snapshot().messages.len() < count {
        assert!(
            start.elapsed() < within,
            "fewer than {count} messages arrived within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_nodes_take_tenants_and_ips_from_control_and_obey_changes() {
    let sim = start_sim(SCENARIO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    std::fs::write(
        &file,
        dev_config(dir.path(), &sim, "steady", "steady.test", ""),
    )
    .expect("config");
    let mut dev = start_dev(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &file).await;
    let token = std::fs::read_to_string(dir.path().join("data/control.token")).expect("token");
    let addr = format!("http://{}", dev.control);
    let mut admin = sluice_control_client::client(&addr, Some(token.trim()))
        .await
        .expect("control");
    let mut ingest = IngestClient::connect(dev.ingest.clone())
        .await
        .expect("ingest");

    // The dev file's records were put into control.
    let snapshot = admin
        .get_snapshot(GetSnapshotRequest {})
        .await
        .expect("snapshot")
        .into_inner();
    let tenant = snapshot
        .tenants
        .iter()
        .find(|t| t.name == "dev")
        .expect("tenant dev in control")
        .clone();
    assert!(
        snapshot
            .ips
            .iter()
            .any(|ip| ip.address == "127.0.0.40" && ip.pool == "default"),
        "{:?}",
        snapshot.ips
    );
    send(&mut ingest, 0).await.expect("dev's key works");
    wait_arrived(&sim, 1, Duration::from_secs(30)).await;

    // Pause the tenant: ingest refuses it.
    let paused_at = Instant::now();
    admin
        .put_tenant(Tenant {
            paused: true,
            ..tenant.clone()
        })
        .await
        .expect("pause");
    let refused = loop {
        match send(&mut ingest, 1).await {
            Ok(()) => {}
            Err(status) => break status,
        }
        assert!(
            paused_at.elapsed() < EFFECT_BOUND,
            "still accepted after the pause"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let pause_effect = paused_at.elapsed();
    let arrived = sim.snapshot().messages.len();
    admin.put_tenant(tenant).await.expect("resume");

    // Pause the source IP: mail waits; resume it: mail goes.
    let mut ip = snapshot
        .ips
        .iter()
        .find(|ip| ip.address == "127.0.0.40")
        .expect("ip")
        .clone();
    ip.lease = None;
    admin
        .put_ip(sluice_proto::v1::SourceIp {
            paused: true,
            ..ip.clone()
        })
        .await
        .expect("pause ip");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resumed = Instant::now();
    let mut accepted_again = None;
    while accepted_again.is_none() {
        if send(&mut ingest, 2).await.is_ok() {
            accepted_again = Some(resumed.elapsed());
        }
        assert!(
            resumed.elapsed() < EFFECT_BOUND,
            "ingest still refuses after the resume"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sim.snapshot().messages.len(),
        arrived,
        "nothing leaves while the pool's only IP is paused"
    );
    let unpaused = Instant::now();
    admin.put_ip(ip).await.expect("resume ip");
    // A paused IP's lease was released with a grace of `leases.margin` (5 s
    // by default: deliveries on the wire finish before anyone may take it);
    // resumed within that grace, it is leased again when the grace ends.
    let ip_effect = wait_arrived(&sim, arrived + 1, EFFECT_BOUND + Duration::from_secs(5)).await;
    eprintln!(
        "dev: tenant pause seen after {pause_effect:?}, resume after {accepted_again:?}, mail left {ip_effect:?} after the IP was resumed ({:?} since)",
        unpaused.elapsed()
    );
    dev.child.start_kill().expect("stop dev");
    let _ = dev.child.wait().await;
}
