use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaConfig, LogError};

/// Asks the cluster for its metadata; fails with [`LogError::Unreachable`]
/// naming the brokers and how to start one when none answers in `timeout`.
pub async fn probe(config: &KafkaConfig, timeout: Duration) -> Result<usize, LogError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.admin().create()?;
        let metadata =
            consumer
                .fetch_metadata(None, timeout)
                .map_err(|source| LogError::Unreachable {
                    brokers: config.brokers.clone(),
                    timeout,
                    source,
                })?;
        Ok(metadata.brokers().len())
    })
    .await
    .expect("metadata probe task panicked")
}

/// Creates `topic` with `partitions` partitions and replication factor 1
/// (single-node test and dev clusters). An existing topic is not an error.
pub async fn create_topic(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
) -> Result<(), LogError> {
    let admin: AdminClient<DefaultClientContext> = config.admin().create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("max.message.bytes", "33554432");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics([&new], &opts).await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(LogError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}
