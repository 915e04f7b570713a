//! Topic administration and the reachability probe.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaConfig, LogError, MAX_RECORD_BYTES, TopicSpec};

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

/// Creates `topic` with `partitions` partitions, replicated as far as the
/// cluster allows (see [`create_topic_as`]). An existing topic is not an
/// error.
pub async fn create_topic(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
) -> Result<(), LogError> {
    create_topic_as(config, topic, &TopicSpec::with_partitions(partitions)).await
}

/// Creates `topic` as `spec` says (replication and `min.insync.replicas`
/// resolved against the brokers the cluster reports), taking records up to
/// [`MAX_RECORD_BYTES`]. An existing topic is not an error and is not
/// changed.
pub async fn create_topic_as(
    config: &KafkaConfig,
    topic: &str,
    spec: &TopicSpec,
) -> Result<(), LogError> {
    let partitions = spec.partitions;
    let brokers = probe(config, Duration::from_secs(10)).await?;
    let replication = spec.replication_on(brokers);
    let min_insync = spec.min_insync_for(replication).to_string();
    let admin: AdminClient<DefaultClientContext> =
        config.admin().create().map_err(config.fail(None))?;
    let max_bytes = MAX_RECORD_BYTES.to_string();
    let new = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(i32::from(replication)),
    )
    .set("max.message.bytes", &max_bytes)
    .set("min.insync.replicas", &min_insync);
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
