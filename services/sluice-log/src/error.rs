use std::time::Duration;

/// Errors of the message log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// No broker answered within the timeout.
    #[error(
        "Kafka is not reachable at {brokers} (no metadata within {timeout:?}): {source}. \
         Start it with `deploy/servers/kafka.sh start`, or point SLUICE_KAFKA_BROKERS at a running broker"
    )]
    Unreachable {
        brokers: String,
        timeout: Duration,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The broker refused to create a topic.
    #[error("creating topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    /// Any other client error.
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
}
