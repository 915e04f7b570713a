//! The shared `MessageLog` conformance suite (`sluice_store::conformance`)
//! against `KafkaLog` on a real broker: the same checks `sluice-store` runs
//! against the embedded log. Retention is embedded-only and not checked here.
//!
//! Needs a broker: `deploy/servers/kafka.sh start`. Without one every test
//! fails with the reachability error, which says how to start it.

use std::time::Duration;

use sluice_log::{KafkaConfig, KafkaLog, probe};
use sluice_store::conformance;

async fn kafka_log() -> KafkaLog {
    let config = KafkaConfig::from_env("sluice-log-conformance");
    if let Err(err) = probe(&config, Duration::from_secs(10)).await {
        panic!("this test needs a running Kafka broker. {err}");
    }
    KafkaLog::connect(config)
        .await
        .unwrap_or_else(|err| panic!("this test needs a running Kafka broker. {err}"))
}

/// Topic and group names unique to this run.
fn fresh(label: &str) -> String {
    format!(
        "sluice.test.conformance.{label}.{}",
        uuid::Uuid::new_v4().simple()
    )
}

macro_rules! conformance_tests {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let log = kafka_log().await;
            conformance::$check(&log, &fresh).await;
        }
    )*};
}

conformance_tests!(
    offsets_are_dense_and_follow_the_key,
    read_limits_hold,
    read_waits_for_an_append,
    reads_below_the_start_begin_at_the_earliest,
    commits_round_trip_and_resume,
    batches_span_topics,
    bad_input_is_refused,
    a_member_reads_every_record_once,
    a_member_resumes_after_the_commit,
    paused_partitions_wait,
    large_records_round_trip,
);

#[tokio::test]
async fn an_unreachable_broker_fails_connect_with_how_to_start_it() {
    let config = KafkaConfig {
        brokers: "127.0.0.1:1".into(),
        client_id: "sluice-log-test".into(),
    };
    let err = match KafkaLog::connect_within(config, Duration::from_secs(2)).await {
        Ok(_) => panic!("nothing listens on port 1"),
        Err(err) => err,
    };
    assert!(
        err.to_string().contains("deploy/servers/kafka.sh start"),
        "{err}"
    );
}
