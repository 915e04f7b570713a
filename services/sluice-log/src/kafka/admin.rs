//! Topic administration and the reachability probe.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaConfig, LogError, MAX_RECORD_BYTES};

/// Asks the cluster for its metadata; fails with [`LogError::Unavailable`]
/// naming the brokers and how to start one when none answers in `timeout`.
pub async fn probe(config: &KafkaConfig, timeout: Duration) -> Result<usize, LogError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.admin().create().map_err(config.fail(None))?;
        let metadata =
            consumer
                .fetch_metadata(None, timeout)
                .map_err(|source| LogError::Unavailable {
                    server: config.brokers.clone(),
                    reason: format!("no metadata within {timeout:?}: {source}"),
                })?;
        Ok(metadata.brokers().len())
    })
    .await
    .map_err(|err| LogError::Internal(format!("the Kafka metadata probe failed: {err}")))?
}

/// Creates `topic` with `partitions` partitions and replication factor 1
/// (single-node test and dev clusters), taking records up to
/// [`MAX_RECORD_BYTES`]. An existing topic is not an error.
pub async fn create_topic(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
) -> Result<(), LogError> {
    let admin: AdminClient<DefaultClientContext> =
        config.admin().create().map_err(config.fail(None))?;
    let max_bytes = MAX_RECORD_BYTES.to_string();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("max.message.bytes", &max_bytes);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(config.fail(Some(topic)))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(refused(config, topic, partitions, code)),
        }
    }
    Ok(())
}

/// The error of a topic creation the cluster refused with `code`.
fn refused(
    config: &KafkaConfig,
    topic: String,
    partitions: i32,
    code: RDKafkaErrorCode,
) -> LogError {
    match code {
        RDKafkaErrorCode::InvalidTopic => LogError::InvalidName {
            what: "topic",
            name: topic,
            reason: "the Kafka cluster refused it as a topic name",
        },
        RDKafkaErrorCode::InvalidPartitions => LogError::BadPartitionCount { topic, partitions },
        code => LogError::from_kafka(KafkaError::AdminOp(code), &config.brokers, Some(&topic)),
    }
}
