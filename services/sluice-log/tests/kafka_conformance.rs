//! The shared `MessageLog` conformance suite (`sluice_log::conformance`)
//! against `KafkaLog` on a real broker: the same checks `tests/embedded_conformance.rs` runs
//! against the embedded log. Retention is embedded-only and not checked here.
//!
//! Needs a broker: `deploy/servers/kafka.sh start`. Without one every test
//! fails with the reachability error, which says how to start it.

use std::time::Duration;

use sluice_log::{KafkaConfig, KafkaLog, probe};

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

/// The broker's log; nothing to keep alive beside it.
async fn open() -> ((), KafkaLog) {
    ((), kafka_log().await)
}

sluice_log::conformance_tests!(open, fresh);

#[tokio::test]
async fn an_unreachable_broker_fails_connect_with_how_to_start_it() {
    let config = KafkaConfig::new("127.0.0.1:1", "sluice-log-test");
    let err = match KafkaLog::connect_within(config, Duration::from_secs(2)).await {
        Ok(_) => panic!("nothing listens on port 1"),
        Err(err) => err,
    };
    assert!(
        err.to_string().contains("deploy/servers/kafka.sh start"),
        "{err}"
    );
}
