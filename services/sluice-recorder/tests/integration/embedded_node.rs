//! A whole recorder node (Kafka consumer, scorer, Query server) on the
//! embedded ledger: opened from the configuration by `RecorderBackends::open`,
//! then served again by `run` over a ledger the test opened itself. No Cassandra.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1::{
    BounceClass, Event, EventKind, GetMessageRequest, GetReputationRequest, GetStatsRequest,
    StatsDimension,
};
use sluice_recorder::{EmbeddedLedger, LedgerKind, Metrics, RecorderConfig};
use tokio::net::TcpListener;

use crate::common::*;

const IP: &str = "192.0.2.77";

async fn embedded_config(data_dir: &std::path::Path) -> RecorderConfig {
    let kafka = kafka().await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let config = RecorderConfig {
        ledger: LedgerKind::Embedded,
        data_dir: data_dir.to_path_buf(),
        brokers: kafka.brokers.clone(),
        topic: format!("sluice.test.events.{id}"),
        group: format!("sluice-recorder-test-{id}"),
        batch_max_events: 200,
        batch_max_wait: sluice_node::Span(50),
        reputation: sluice_recorder::ReputationConfig {
            interval: sluice_node::Span::secs(1),
            ..Default::default()
        },
        credentials: sluice_testkit::query::credentials(),
        ..RecorderConfig::default()
    };
    sluice_log::create_topic(&kafka, &config.topic, PARTITIONS)
        .await
        .expect("create topic");
    config
}

async fn delivered_today(url: String) -> u64 {
    let mut client = sluice_testkit::query::admin(url).await.expect("connect");
    let today = sluice_recorder::time::day_of(now_secs());
    let stats = client
        .get_stats(GetStatsRequest {
            dimension: StatsDimension::SourceIp.into(),
            key: IP.into(),
            from_day: today.clone(),
            to_day: today,
        })
        .await
        .expect("stats")
        .into_inner();
    stats.rows.iter().map(|r| r.delivered).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_records_on_the_embedded_ledger_and_serves_it_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = embedded_config(dir.path()).await;
    let mut events: Vec<_> = (0..240)
        .map(|i| match i % 8 {
            0 => bounce(&format!("e-{i}"), IP, "outlook", BounceClass::BadMailbox),
            _ => event(EventKind::Delivered, &format!("e-{i}"), IP, "outlook"),
        })
        .collect();
    events.push(events[1].clone()); // a duplicate: counted once
    // Delivered twice: again at the same attempt (another event, as after a
    // crash on the wire), and at a later attempt (a second retry chain).
    let again = |i: usize, attempt: u32| Event {
        event_id: format!("again-{i}"),
        attempt,
        ..events[i].clone()
    };
    let repeats = [again(2, events[2].attempt), again(3, events[3].attempt + 1)];
    events.extend(repeats);
    produce(&config, &events).await;

    let recorder = start(&config).await;
    let url = recorder.url();
    // A message counts as delivered once: 210, whatever its repeats.
    wait_until("210 deliveries counted", Duration::from_secs(60), || {
        let url = url.clone();
        async move { delivered_today(url).await == 210 }
    })
    .await;
    wait_until("the path is paused", Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let mut client = sluice_testkit::query::admin(url).await.expect("connect");
            let req = GetReputationRequest {
                source_ip: IP.into(),
                ..Default::default()
            };
            let rows = client.get_reputation(req).await.expect("rep").into_inner();
            rows.rows.iter().any(|r| r.signal == "pause")
        }
    })
    .await;
    assert_eq!(Metrics::get(&recorder.metrics.duplicates), 3);
    assert_eq!(
        Metrics::get(&recorder.metrics.duplicate_deliveries),
        2,
        "both second deliveries are visible"
    );
    let text = recorder.metrics.render();
    for counted in [
        "sluice_recorder_tenant_events_total{tenant=\"acme\",kind=\"delivered\"} 210\n",
        "sluice_recorder_tenant_events_total{tenant=\"acme\",kind=\"bounced\"} 30\n",
    ] {
        assert!(text.contains(counted), "{counted} missing from\n{text}");
    }
    let metrics = recorder.metrics.clone();
    let topic = config.topic.clone();
    wait_until(
        "no lag left in any partition",
        Duration::from_secs(30),
        || {
            let text = metrics.render();
            let settled = (0..PARTITIONS).all(|p| {
                text.contains(&format!(
                "sluice_recorder_consumer_lag_records{{topic=\"{topic}\",partition=\"{p}\"}} 0\n"
            ))
            });
            async move { settled }
        },
    )
    .await;
    recorder.stop().await;

    // Reopened by the test and handed to run: everything is still there.
    let ledger = EmbeddedLedger::open(dir.path(), 30, 7).expect("reopen");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = sluice_node::CancellationToken::new();
    let kafka = sluice_log::KafkaLog::lazy(sluice_log::KafkaConfig::new(
        config.brokers.clone(),
        "recorder-test",
    ))
    .expect("kafka client");
    let backends = sluice_recorder::RecorderBackends {
        log: kafka.into(),
        ledger: Arc::new(ledger.into()),
        metrics: Arc::new(Metrics::default()),
    };
    let node = tokio::spawn(sluice_recorder::run(
        sluice_recorder::RecorderListeners {
            query: listener,
            metrics: None,
        },
        config,
        backends,
        stop.clone(),
    ));
    wait_until(
        "the restarted node answers",
        Duration::from_secs(30),
        || {
            let url = url.clone();
            async move { sluice_testkit::query::admin(url).await.is_ok() }
        },
    )
    .await;
    assert_eq!(delivered_today(url.clone()).await, 210);
    let mut client = sluice_testkit::query::admin(url).await.expect("connect");
    let status = client
        .get_message(GetMessageRequest {
            message_id: "e-8".into(),
        })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.state(), EventKind::Bounced);
    stop.cancel();
    node.await.expect("node task").expect("clean exit");
}
