//! Control as the cluster's only source of configuration, with real
//! processes: two `sluice control` replicas on one Cassandra keyspace, an
//! `sluice ingest` and an `sluice sender` whose files name only the
//! replicas (tenants, the pool's IPs and the site's limits are in control),
//! Kafka and the ISP simulator.
//!
//! Measured, from the outside: the time from an admin call to its effect —
//! a lowered site limit (deliveries stop), a paused tenant (ingest answers
//! PERMISSION_DENIED), and, after the replica both nodes followed is killed
//! with -9, the resume written on the other replica. Then every accepted
//! message is delivered and the simulator saw no limit violated.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_proto::v1::EventKind;
use sluice_proto::v1::ingest_client::IngestClient;
use sluice_testkit::cluster::{
    API_KEY, Tokens, admin, cluster_names, configure, control_toml, follow_toml,
    follower_sender_toml, free_addr, gmail_policy, ingest_toml, numbered_send, spawn_role, tenant,
    wait_listening, write,
};
use sluice_testkit::sender::*;
use tonic::Code;

const SCENARIO: &str = r#"
seed = 11

[[provider]]
name = "gmail"
style = "gmail"
listen = "127.0.0.2:0"
domains = ["gmail.test"]
[provider.limits]
connections_per_ip = 8
messages_per_minute = 6000
"#;

/// The effect of an admin call must be seen within this (the aim is 2 s;
/// the bound leaves room for a loaded machine).
const EFFECT_BOUND: Duration = Duration::from_secs(6);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

type Ingest = IngestClient<tonic::transport::Channel>;
type Control = sluice_control_client::Client;

/// Submits one message to `n`@gmail.test; `Ok(message id)` or the status.
/// With the first replica dead, tenant acme enters and removes its own
/// suppressions through ingest (ingest holds only a node token), and the
/// surviving replica lists exactly what the tenant entered.
async fn tenant_list_through_ingest(grpc: std::net::SocketAddr, admin: &mut Control) {
    use sluice_proto::v1::tenant_suppressions_client::TenantSuppressionsClient;
    use sluice_proto::v1::{AddSuppressionsRequest, RemoveSuppressionsRequest, TenantSuppression};
    let mut tenant_api = TenantSuppressionsClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect ingest");
    let entries = ["One@Gmail.test", "two@gmail.test"].map(|address| TenantSuppression {
        address: address.into(),
        reason: "manual".into(),
        created_at: None,
    });
    let added = tenant_api
        .add_suppressions(sluice_testkit::with_key(
            AddSuppressionsRequest {
                suppressions: entries.to_vec(),
            },
            API_KEY,
        ))
        .await
        .expect("a node token enters the tenant's suppressions");
    assert_eq!(added.into_inner().added, 2);
    let removed = tenant_api
        .remove_suppressions(sluice_testkit::with_key(
            RemoveSuppressionsRequest {
                addresses: vec!["two@gmail.test".into()],
            },
            API_KEY,
        ))
        .await
        .expect("remove");
    assert_eq!(removed.into_inner().removed, 1);
    let listed = admin
        .list_suppressions(sluice_proto::v1::ListSuppressionsRequest {
            tenant: "acme".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .suppressions;
    let listed: Vec<(&str, &str)> = listed
        .iter()
        .map(|s| (s.address.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(listed, [("one@gmail.test", "manual")]);
}

async fn submit(ingest: &mut Ingest, n: usize) -> Result<String, tonic::Status> {
    let response = ingest.send(numbered_send(n)).await?.into_inner();
    Ok(response.recipients[0].message_id.clone())
}

/// The first moment at or after `from` (ms) after which the simulator
/// accepted at most `allowed` messages in the next `quiet` ms.
fn quiet_from(accepted: &[u64], from: u64, quiet: u64, allowed: usize) -> Option<u64> {
    let last = *accepted.iter().max()?;
    let mut t = from;
    while t <= last {
        let after = accepted
            .iter()
            .filter(|a| **a > t && **a <= t + quiet)
            .count();
        if after <= allowed {
            return Some(t);
        }
        t += 20;
    }
    Some(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_take_every_setting_from_control_and_obey_changes_within_seconds() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let (session, keyspace) = sluice_testkit::cql::migrated_keyspace("control_cluster").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = Tokens::new(dir.path());
    // Ingest publishes to `<prefix><pool>`; the sender reads that topic.
    let names = cluster_names();
    let sim = start_sim(SCENARIO).await;
    let binary = env!("CARGO_BIN_EXE_sluice");

    let controls = [free_addr(), free_addr()];
    let mut replicas = Vec::new();
    for (i, addr) in controls.iter().enumerate() {
        let path = write(
            dir.path(),
            &format!("control{i}.toml"),
            &control_toml(*addr, &keyspace, &tokens),
        );
        replicas.push(spawn_role(binary, "control", &path, &[], "warn"));
    }
    for addr in &controls {
        wait_listening(*addr, "sluice control", Duration::from_secs(60)).await;
    }
    configure(controls[1], &tokens, &names.pool, 2, 600).await;

    let follow = follow_toml(&controls, &tokens);
    let grpc = free_addr();
    let ingest_path = write(
        dir.path(),
        "ingest.toml",
        &ingest_toml(grpc, &kafka.brokers, &names, &follow, ""),
    );
    let mut ingest_node = spawn_role(
        binary,
        "ingest",
        &ingest_path,
        &[],
        "warn,sluice_ingest=info",
    );
    let sender_path = write(
        dir.path(),
        "sender.toml",
        &follower_sender_toml(&names, &sim, &kafka.brokers, &follow),
    );
    let mut sender = spawn_role(
        binary,
        "sender",
        &sender_path,
        &[],
        "warn,sluice_sender::dispatch=info",
    );
    wait_listening(grpc, "sluice ingest", Duration::from_secs(60)).await;
    let mut ingest = IngestClient::connect(format!("http://{grpc}"))
        .await
        .expect("ingest");

    // Load at the site policy's 600/min per IP (two IPs: about 20/s).
    let mut accepted: HashSet<String> = HashSet::new();
    for n in 0..400 {
        accepted.insert(submit(&mut ingest, n).await.expect("submit"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.snapshot().messages.len() < 60 {
        assert!(Instant::now() < deadline, "mail did not flow within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 1. Lower the site's limit to 1 per minute on the second replica.
    let mut admin2 = admin(controls[1], &tokens).await;
    let lowered_at = now_ms();
    admin2
        .put_site_policy(gmail_policy(1))
        .await
        .expect("lower the limit");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let times: Vec<u64> = sim
        .snapshot()
        .messages
        .iter()
        .map(|m| m.accepted_at_unix_ms)
        .collect();
    let before: usize = times
        .iter()
        .filter(|t| **t + 2_000 >= lowered_at && **t <= lowered_at)
        .count();
    assert!(
        before >= 10,
        "mail must be flowing when the limit is lowered for the time to mean anything ({before} in the 2 s before)"
    );
    let stopped = quiet_from(&times, lowered_at, 3_000, 2).expect("accepted messages") - lowered_at;
    eprintln!(
        "limit lowered: {before} accepted in the 2 s before; deliveries stopped {stopped} ms after the admin call"
    );
    assert!(
        stopped <= EFFECT_BOUND.as_millis() as u64,
        "deliveries went on for {stopped} ms after the limit was lowered"
    );

    // 2. Pause the tenant: ingest refuses its submissions.
    let paused_at = Instant::now();
    admin2
        .put_tenant(tenant(&names.pool, true))
        .await
        .expect("pause");
    let mut n = 10_000;
    let refused = loop {
        match submit(&mut ingest, n).await {
            Ok(id) => {
                accepted.insert(id);
                n += 1;
            }
            Err(status) => break status,
        }
        assert!(
            paused_at.elapsed() < EFFECT_BOUND,
            "ingest still accepts {EFFECT_BOUND:?} after the pause"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pause_effect = paused_at.elapsed();
    eprintln!(
        "tenant paused: ingest refused after {pause_effect:?}: {}",
        refused.message()
    );
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("paused"), "{refused:?}");

    // 3. The replica the nodes follow first dies; the other one resumes.
    replicas[0].start_kill().expect("kill -9 control");
    replicas[0].wait().await.expect("reap");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = sim.snapshot().messages.len();
    let resumed_at = Instant::now();
    admin2
        .put_site_policy(gmail_policy(600))
        .await
        .expect("raise the limit");
    admin2
        .put_tenant(tenant(&names.pool, false))
        .await
        .expect("resume");
    let resume_effect = loop {
        match submit(&mut ingest, n).await {
            Ok(id) => {
                accepted.insert(id);
                break resumed_at.elapsed();
            }
            Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{status:?}"),
        }
        assert!(
            resumed_at.elapsed() < EFFECT_BOUND * 2,
            "ingest still refuses after the resume on the other replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let flowing = loop {
        if sim.snapshot().messages.len() >= before + 10 {
            break resumed_at.elapsed();
        }
        assert!(
            resumed_at.elapsed() < EFFECT_BOUND * 2,
            "deliveries did not resume after the limit was raised on the other replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "after kill -9 of a replica: ingest accepted again after {resume_effect:?}, deliveries resumed after {flowing:?}"
    );

    tenant_list_through_ingest(grpc, &mut admin2).await;

    // 4. Everything accepted is delivered, within the simulator's limits.
    let events = collect_fates(&log, &names.events, &accepted, Duration::from_secs(120)).await;
    let finals = finals(&events);
    let delivered = accepted
        .iter()
        .filter(|id| {
            finals
                .get(*id)
                .is_some_and(|e| e.kind() == EventKind::Delivered)
        })
        .count();
    sender.start_kill().expect("stop sender");
    ingest_node.start_kill().expect("stop ingest");
    replicas[1].start_kill().expect("stop control");
    let report = sim.shutdown().await;
    sluice_testkit::cql::drop_keyspace(&session, &keyspace).await;
    assert_eq!(
        delivered,
        accepted.len(),
        "every accepted message is delivered"
    );
    assert_eq!(report.total_violations(), 0, "limit violations:\n{report}");
}
