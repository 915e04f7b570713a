//! The servers the tests need, from `SLUICE_KAFKA_BROKERS` and
//! `SLUICE_CASSANDRA` (the test command starts both). A test that cannot
//! reach one fails with a message naming it; it never skips.

use std::time::Duration;

use scylla::client::session::Session;
use sluice_cql::CqlConfig;
use sluice_log::KafkaConfig;

/// The Kafka broker of the tests, after a probe that it answers.
pub async fn kafka(client_id: &str) -> KafkaConfig {
    let config = KafkaConfig::from_env(client_id);
    if let Err(err) = sluice_log::probe(&config, Duration::from_secs(10)).await {
        panic!("this test needs a running Kafka broker. {err}");
    }
    config
}

/// A session on the Cassandra node of the tests.
pub async fn cassandra() -> Session {
    let config = CqlConfig::from_env();
    match sluice_cql::connect(&config).await {
        Ok(session) => session,
        Err(err) => panic!(
            "this test needs a running Cassandra node at {} (SLUICE_CASSANDRA): {err}. \
             Start it with `deploy/servers/cassandra.sh start`",
            config.contact_points
        ),
    }
}
