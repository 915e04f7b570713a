//! The whole cluster, short version (issue #12 item 6), every part a real
//! process of the `sluice` binary: a three-broker Kafka cluster (KRaft) on
//! loopback, Cassandra, a control service, a recorder, two ingest nodes and
//! three senders for one pool of six source IPs, all taking their
//! configuration from control, against the ISP simulator. In one run, while
//! mail flows with the site limit binding:
//!
//! 1. a sender is killed with -9 (its IPs move to the others within the
//!    lease TTL);
//! 2. a fourth sender joins;
//! 3. a Kafka broker is killed with -9 (and started again at the end);
//! 4. the site limit is lowered and the tenant paused through control, then
//!    both are undone.
//!
//! Then: every accepted message delivered, no limit violated at the
//! simulator, no source IP used by two nodes at overlapping times (from the
//! delivered events' node and lease epoch), duplicates only from deliveries
//! on the wire at the kill and the rebalances, and the recorder's count of
//! delivered messages equal to the messages. The long version is
//! `loadtest/cluster.sh` (docs/benchmarks.md).

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_log::{KafkaConfig, KafkaLog, Log};
use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{EventKind, GetStatsRequest, StatsDimension};
use sluice_testkit::cluster::{
    Tokens, admin, cluster_names, configure, follow_toml, free_addr, gmail_policy, ingest_toml,
    leased_sender_toml, numbered_send, recorder_toml, spawn_role, start_control, tenant,
    wait_listening, write,
};
use sluice_testkit::leases::{overlaps, spawn_sender, uses};
use sluice_testkit::sender::*;
use tokio::process::Child;
use tonic::Code;

/// Messages of the short version; `SLUICE_CLUSTER_MESSAGES` overrides it
/// (the long version, `loadtest/cluster.sh`).
fn messages() -> usize {
    env_or("SLUICE_CLUSTER_MESSAGES", 1200)
}

/// Per source IP: the site policy in control (5 per second by default)
/// under the simulator's own limit (1.2 times it), so the sender's limit
/// binds; `SLUICE_CLUSTER_PER_MINUTE` overrides it.
fn per_minute() -> u32 {
    env_or("SLUICE_CLUSTER_PER_MINUTE", 300)
}

/// How long one stage of the run may take: two minutes, plus a tenth of a
/// second per message for long runs.
fn stage_limit() -> Duration {
    Duration::from_secs(120 + messages() as u64 / 10)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}
/// Sender nodes' open connections at most (2 per IP, 6 IPs): what can be on
/// the wire at one kill or rebalance.
const ON_THE_WIRE: usize = 12;

fn scenario() -> String {
    format!(
        "seed = 21\n\n[[provider]]\nname = \"gmail\"\nstyle = \"gmail\"\nlisten = \"127.0.0.2:0\"\n\
         domains = [\"gmail.test\"]\n[provider.limits]\nconnections_per_ip = 4\nmessages_per_minute = {}\n",
        per_minute() * 6 / 5
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn cluster_brokers() -> String {
    std::env::var("SLUICE_KAFKA_CLUSTER").unwrap_or_else(|_| {
        panic!(
            "this test needs the three-broker Kafka cluster: start it with \
             `deploy/servers/kafka-cluster.sh start` and set SLUICE_KAFKA_CLUSTER to what \
             `deploy/servers/kafka-cluster.sh brokers` prints"
        )
    })
}

/// Runs `deploy/servers/kafka-cluster.sh ARGS`.
fn kafka_cluster(args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/servers/kafka-cluster.sh");
    let status = Command::new("bash")
        .arg(path)
        .args(args)
        .status()
        .expect("run kafka-cluster.sh");
    assert!(status.success(), "kafka-cluster.sh {args:?} failed");
}

/// Starts broker 2 again when dropped, also when the test fails, so the
/// tests after this one find the whole cluster.
struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/servers/kafka-cluster.sh");
        let status = Command::new("bash")
            .arg(path)
            .args(["restart", "2"])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!(
                "could not start broker 2 again: run `deploy/servers/kafka-cluster.sh restart 2`"
            );
        }
    }
}

const TOPICS: &str = "[topics.outbound]\npartitions = 12\n[topics.delay]\npartitions = 12\n[topics.events]\npartitions = 12\n";

type Ingest = IngestClient<tonic::transport::Channel>;

/// Submits messages `range` through `ingest`, retrying refusals (a pause)
/// and unavailability (a lost broker) until each is accepted.
async fn submit_all(
    mut ingest: Ingest,
    range: std::ops::Range<usize>,
    accepted: Arc<Mutex<HashSet<String>>>,
) {
    for n in range {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match ingest.send(numbered_send(n)).await {
                Ok(response) => {
                    let id = response.into_inner().recipients[0].message_id.clone();
                    accepted.lock().expect("accepted").insert(id);
                    break;
                }
                Err(status) => {
                    assert!(
                        Instant::now() < deadline,
                        "message {n} not accepted within 120 s: {status:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn wait_accepted(sim: &sluice_sim::SimHandle, at_least: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while sim.snapshot().messages.len() < at_least {
        assert!(
            Instant::now() < deadline,
            "fewer than {at_least} messages delivered in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_survives_kills_a_join_a_lost_broker_and_admin_changes() {
    let brokers = cluster_brokers();
    let kafka = KafkaConfig::new(brokers.clone(), "sluice-whole-cluster-test");
    let log: Log = KafkaLog::connect(kafka)
        .await
        .unwrap_or_else(|e| panic!("the three-broker cluster is not reachable: {e}"))
        .into();
    let (session, keyspace) = sluice_testkit::cql::migrated_keyspace("cluster").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = Tokens::new(dir.path());
    let names = cluster_names();
    let sim = start_sim(&scenario()).await;
    let binary = env!("CARGO_BIN_EXE_sluice");

    let (control, _control) = start_control(binary, dir.path(), &keyspace, &tokens).await;
    configure(control, &tokens, &names.pool, 6, per_minute()).await;
    let follow = follow_toml(&[control], &tokens);

    let query = free_addr();
    let path = write(
        dir.path(),
        "recorder.toml",
        &recorder_toml(query, &brokers, &keyspace, &names, &tokens),
    );
    let _recorder = spawn_role(binary, "recorder", &path, &[], "warn");
    let mut ingest_nodes = Vec::new();
    let mut ingest_addrs = Vec::new();
    for i in 0..2 {
        let grpc = free_addr();
        let path = write(
            dir.path(),
            &format!("ingest{i}.toml"),
            &ingest_toml(grpc, &brokers, &names, &follow, TOPICS),
        );
        ingest_nodes.push(spawn_role(binary, "ingest", &path, &[], "warn"));
        ingest_addrs.push(grpc);
    }
    let sender_path = write(
        dir.path(),
        "sender.toml",
        &format!(
            "{}\n{TOPICS}",
            leased_sender_toml(&names, &sim, &brokers, &keyspace, &follow)
        ),
    );
    let mut senders: Vec<Child> = (1..=3)
        .map(|i| spawn_sender(binary, &sender_path, &format!("sender-{i}")))
        .collect();
    for grpc in &ingest_addrs {
        wait_listening(*grpc, "sluice ingest", Duration::from_secs(60)).await;
    }

    // Mail through both ingest nodes at once.
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let mut submitting = Vec::new();
    for (i, grpc) in ingest_addrs.iter().enumerate() {
        let client = IngestClient::connect(format!("http://{grpc}"))
            .await
            .expect("ingest");
        let half = messages() / 2;
        let range = i * half..(i + 1) * half;
        submitting.push(tokio::spawn(submit_all(client, range, accepted.clone())));
    }

    // 1. kill -9 a sender.
    wait_accepted(&sim, messages() / 5, stage_limit()).await;
    senders[0].start_kill().expect("kill -9 sender-1");
    let killed_at = now_ms();
    senders[0].wait().await.expect("reap");
    // 2. a fourth sender joins.
    wait_accepted(&sim, messages() * 2 / 5, stage_limit()).await;
    senders.push(spawn_sender(binary, &sender_path, "sender-4"));
    // 3. a broker dies.
    wait_accepted(&sim, messages() / 2, stage_limit()).await;
    kafka_cluster(&["kill", "2"]);
    let _back = BrokerBack;
    let broker_lost = Instant::now();
    let before = sim.snapshot().messages.len();
    wait_accepted(&sim, before + 20, stage_limit()).await;
    let stall = broker_lost.elapsed();
    // 4. the limit lowered and the tenant paused through control, then undone.
    wait_accepted(&sim, messages() * 3 / 5, stage_limit()).await;
    let mut c = admin(control, &tokens).await;
    let lowered = Instant::now();
    c.put_site_policy(gmail_policy(1)).await.expect("lower");
    c.put_tenant(tenant(&names.pool, true))
        .await
        .expect("pause");
    let mut probe = IngestClient::connect(format!("http://{}", ingest_addrs[1]))
        .await
        .expect("ingest");
    // Each probe gets 1 s: a submission accepted before the pause may wait
    // on the log (a broker was just lost), which says nothing about the pause.
    // A probe that failed otherwise or timed out may still have been
    // accepted: it is sent again
    // with its idempotency key after the resume, which answers its id.
    let probe_request = |i: usize| {
        let mut request = numbered_send(messages() + 1 + i);
        request.get_mut().idempotency_key = format!("probe-{i}");
        request
    };
    let mut timed_out = Vec::new();
    let mut probes = 0;
    let refused = loop {
        probes += 1;
        let probe_send = probe.send(probe_request(probes));
        match tokio::time::timeout(Duration::from_secs(1), probe_send).await {
            Ok(Ok(response)) => {
                let id = response.into_inner().recipients[0].message_id.clone();
                accepted.lock().expect("accepted").insert(id);
            }
            Ok(Err(status)) if status.code() == Code::PermissionDenied => break lowered.elapsed(),
            // Unavailable or timed out: maybe accepted all the same.
            Ok(Err(_)) | Err(_) => timed_out.push(probes),
        }
        assert!(
            lowered.elapsed() < Duration::from_secs(10),
            "the pause was not obeyed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = sim.snapshot().messages.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = sim.snapshot().messages.len() - held;
    c.put_site_policy(gmail_policy(per_minute()))
        .await
        .expect("raise");
    c.put_tenant(tenant(&names.pool, false))
        .await
        .expect("resume");

    for task in submitting {
        task.await.expect("submitter");
    }
    let expected: HashSet<String> = accepted.lock().expect("accepted").clone();
    let events = collect_fates(&log, &names.events, &expected, stage_limit() * 2).await;
    drop(_back);
    let finals = finals(&events);
    let delivered = expected
        .iter()
        .filter(|id| {
            finals
                .get(*id)
                .is_some_and(|e| e.kind() == EventKind::Delivered)
        })
        .count();
    let mut stats = sluice_testkit::query::client(&format!("http://{query}"), Some(&tokens.admin))
        .await
        .expect("query");
    let today = sluice_recorder_day();
    let mut recorded = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorded < delivered as u64 && Instant::now() < deadline {
        let rows = stats
            .get_stats(GetStatsRequest {
                dimension: StatsDimension::Tenant.into(),
                key: "acme".into(),
                from_day: today.clone(),
                to_day: today.clone(),
            })
            .await
            .expect("stats")
            .into_inner()
            .rows;
        recorded = rows.iter().map(|r| r.delivered).sum();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for mut child in senders.into_iter().chain(ingest_nodes) {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    let report = sim.shutdown().await;
    sluice_testkit::cql::drop_keyspace(&session, &keyspace).await;

    let uses = uses(&report, &events);
    let found = overlaps(&uses);
    let mut by_node: std::collections::BTreeMap<&str, usize> = Default::default();
    for u in &uses {
        *by_node.entry(u.node.as_str()).or_default() += 1;
    }
    let twice = report.duplicates().len();
    let taken = sluice_testkit::leases::takeovers(&uses, "sender-1", killed_at);
    println!(
        "whole cluster: {} accepted, {delivered} delivered, {} accepted by the simulator, {twice} delivered twice, \
         recorder counted {recorded}; deliveries per node {by_node:?}; take-over after kill -9 (ms): {taken:?}; broker loss: 20 more deliveries after {stall:?}; \
         pause refused after {refused:?}; {during} delivered in 3 s while the limit was 1/min per IP and the tenant paused",
        expected.len(),
        report.messages.len(),
    );
    assert_eq!(
        delivered,
        expected.len(),
        "every accepted message is delivered"
    );
    assert_eq!(report.total_violations(), 0, "limit violations:\n{report}");
    assert!(
        found.is_empty(),
        "IPs used by two nodes at once: {found:#?}"
    );
    assert!(
        twice <= 3 * ON_THE_WIRE,
        "{twice} delivered twice (bound {})",
        3 * ON_THE_WIRE
    );
    assert!(
        during <= 6,
        "{during} deliveries while the limit was 1/min on 6 IPs and the tenant paused"
    );
    assert!(
        recorded >= delivered as u64,
        "the recorder counted {recorded} of {delivered} deliveries"
    );
    for (ip, ms) in &taken {
        assert!(*ms <= 7_000, "{ip} taken over after {ms} ms");
    }
}

/// Today in UTC as the recorder keys its counters (`YYYY-MM-DD`).
fn sluice_recorder_day() -> String {
    sluice_recorder::time::day_of((now_ms() / 1000) as i64)
}
