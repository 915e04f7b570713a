//! The reputation loop end to end, on real Kafka and Cassandra: the sender's
//! bounces reach the recorder, the recorder pauses the (IP, site) path and the
//! tenant, the sender reads the signals over gRPC and stops sending to that
//! site from that IP and the tenant's mail altogether, while other tenants'
//! mail to other sites keeps flowing.

use std::time::{Duration, Instant};

use sluice_cql::CqlConfig;
use sluice_recorder::{RecorderConfig, ReputationConfig};
use sluice_sender::SenderConfig;
use sluice_testkit::query::NODE_TOKEN;
use sluice_testkit::sender::*;

const SCENARIO: &str = r#"
[[provider]]
name = "bad"
listen = "127.0.0.2:0"
domains = ["bad.test"]
unknown_users = ["nobody"]

[[provider]]
name = "good"
listen = "127.0.0.3:0"
domains = ["good.test"]
"#;

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn accepted_at(sim: &sluice_sim::SimHandle, provider: &str) -> usize {
    sim.snapshot()
        .messages
        .iter()
        .filter(|m| m.provider == provider)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_bounces_pause_the_path_and_the_tenant_and_nothing_else() {
    let kafka = kafka().await;
    let log = kafka_log(&kafka).await;
    let names = Names::new();
    let session = match sluice_cql::connect(&CqlConfig::from_env()).await {
        Ok(s) => s,
        Err(err) => panic!("this test needs a running Cassandra node. {err}"),
    };
    let thresholds = sluice_recorder::reputation::Thresholds {
        min_volume: 20,
        ..Default::default()
    };
    let recorder_cfg = RecorderConfig {
        brokers: kafka.brokers.clone(),
        cassandra: CqlConfig::from_env().contact_points,
        keyspace: format!("rep_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]),
        topic: names.events.clone(),
        group: format!("{}-recorder", names.group),
        batch_max_wait: sluice_node::Span(50),
        reputation: ReputationConfig {
            interval: sluice_node::Span::secs(1),
            thresholds,
            ..Default::default()
        },
        credentials: sluice_testkit::query::credentials(),
        ..RecorderConfig::default()
    };
    sluice_cql::migrate(&session, &recorder_cfg.keyspace, &recorder_cfg.replication)
        .await
        .expect("migrate");
    sluice_log::create_topic(&kafka, &names.events, 3)
        .await
        .expect("events topic");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let query = format!("http://{}", listener.local_addr().expect("addr"));
    let stop_rec = sluice_node::CancellationToken::new();
    let recorder_backends = sluice_recorder::RecorderBackends::open(&recorder_cfg, &stop_rec)
        .await
        .expect("recorder back ends");
    let recorder = tokio::spawn(sluice_recorder::run(
        sluice_recorder::RecorderListeners {
            query: listener,
            metrics: None,
        },
        recorder_cfg.clone(),
        recorder_backends,
        stop_rec.clone(),
    ));

    let sim = start_sim(SCENARIO).await;
    let token_dir = tempfile::tempdir().expect("temp dir");
    let token_file = sluice_testkit::query::token_file(token_dir.path(), NODE_TOKEN);
    let config = format!(
        "{}\n{}\n{}\n{}\n[reputation]\nquery_addr = \"{query}\"\ninterval = \"1s\"\ntoken_file = \"{}\"\n",
        base_config(&names, &kafka.brokers),
        routes_toml(&sim, &[("bad", &["bad.test"]), ("good", &["good.test"])]),
        site_rules_toml(&sim),
        ips_toml(&names.pool, 1),
        token_file.display(),
    );
    let config = SenderConfig::from_toml(&config).expect("config");
    let sender = RunningSender::start(config, None, None).await;
    let stats = sender.telemetry.stats.clone();

    // Phase 1: every message of tenant `spammer` to `bad` hard-bounces.
    let bounces: Vec<_> = (0..60)
        .map(|i| {
            let mut e = envelope(&names.pool, i, "nobody@bad.test", 512);
            e.tenant = "spammer".into();
            e
        })
        .collect();
    produce(&log, &names.outbound, &bounces).await;
    // A scoring round writes path rows before tenant rows: wait for both.
    wait_for(
        "the sender to apply the path and tenant pauses from the recorder",
        Duration::from_secs(90),
        || {
            let s = stats.lock().expect("stats");
            s.signaled_paths == 1 && s.paused_tenants == 1
        },
    )
    .await;

    // Phase 2: tenant `acme` to both sites, `spammer` to `good`. Only acme's
    // mail to `good` may arrive: the path to `bad` and tenant `spammer` are paused.
    let mut more: Vec<_> = (0..40)
        .map(|i| envelope(&names.pool, 100 + i, &format!("u{i}@bad.test"), 512))
        .collect();
    more.extend((0..40).map(|i| envelope(&names.pool, 200 + i, &format!("u{i}@good.test"), 512)));
    let spam: Vec<_> = (0..10)
        .map(|i| {
            let mut e = envelope(&names.pool, 300 + i, &format!("s{i}@good.test"), 512);
            e.tenant = "spammer".into();
            e
        })
        .collect();
    more.extend(spam.iter().cloned());
    produce(&log, &names.outbound, &more).await;
    wait_for(
        "the good site's 40 messages",
        Duration::from_secs(60),
        || accepted_at(&sim, "good") == 40,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let to_bad = accepted_at(&sim, "bad");
    let to_good = accepted_at(&sim, "good");
    let spam_ids: std::collections::HashSet<String> =
        spam.iter().map(|e| e.message_id.clone()).collect();
    let spam_delivered = accepted_ids(&sim.snapshot())
        .into_iter()
        .filter(|id| spam_ids.contains(id))
        .count();

    sender.stop().await;
    stop_rec.cancel();
    recorder
        .await
        .expect("recorder task")
        .expect("recorder ran");
    sim.shutdown().await;
    sluice_testkit::cql::drop_keyspace(&session, &recorder_cfg.keyspace).await;

    assert_eq!(
        to_bad, 0,
        "the paused path sent nothing to `bad` after the signal"
    );
    assert_eq!(spam_delivered, 0, "the paused tenant's mail waits");
    assert_eq!(to_good, 40, "only acme's mail reached `good`");
    println!(
        "60 hard bounces of tenant `spammer` → recorder paused path (127.0.0.10, bad) and the tenant → \
         sender applied both; then acme: 40 to good delivered, 0 to bad; spammer: 0 of 10 delivered"
    );
}
