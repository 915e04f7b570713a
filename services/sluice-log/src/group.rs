//! [`GroupConsumer`] on Kafka: a subscribed consumer of the group, so Kafka's
//! group protocol shares the partitions between members and moves them when
//! members come and go. Commits are synchronous, on tokio's blocking pool.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use sluice_store::{Commit, Delivery, GroupConsumer, StoreError, check_group};

use crate::KafkaConfig;

/// A member of a Kafka consumer group.
pub struct KafkaConsumer {
    consumer: Arc<StreamConsumer>,
    group: String,
}

impl KafkaConsumer {
    /// Joins `group` and subscribes to `topics` (assignment follows with the
    /// first polls).
    pub(crate) fn subscribe(
        config: &KafkaConfig,
        group: &str,
        topics: &[String],
    ) -> Result<Self, StoreError> {
        check_group(group)?;
        let consumer: StreamConsumer = config
            .consumer(group)
            .set("max.partition.fetch.bytes", "33554432")
            .create()
            .map_err(kafka_error)?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(kafka_error)?;
        Ok(Self {
            consumer: Arc::new(consumer),
            group: group.to_owned(),
        })
    }

    fn tpl(topic: &str, partition: i32) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        tpl
    }
}

fn delivery(msg: &BorrowedMessage<'_>) -> Delivery {
    Delivery {
        topic: msg.topic().to_owned(),
        partition: msg.partition(),
        offset: msg.offset(),
        key: msg.key().unwrap_or_default().to_vec(),
        payload: msg.payload().unwrap_or_default().to_vec(),
    }
}

fn kafka_error(err: impl std::fmt::Display) -> StoreError {
    StoreError::Task(format!("Kafka: {err}"))
}

impl GroupConsumer for KafkaConsumer {
    async fn poll_at_most(
        &mut self,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let first = match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(msg) => delivery(&msg.map_err(kafka_error)?),
        };
        let mut out = vec![first];
        // Whatever else is already fetched, without waiting. `recv` is
        // cancel-safe, so a future that is not ready loses nothing.
        while out.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(msg)) => out.push(delivery(&msg)),
                Some(Err(err)) => {
                    tracing::warn!(%err, "Kafka consumer error; returning the records read so far");
                    break;
                }
                None => break,
            }
        }
        Ok(out)
    }

    fn pause(&mut self, topic: &str, partition: i32) {
        if let Err(err) = self.consumer.pause(&Self::tpl(topic, partition)) {
            tracing::warn!(topic, partition, %err, "could not pause a partition");
        }
    }

    fn resume(&mut self, topic: &str, partition: i32) {
        if let Err(err) = self.consumer.resume(&Self::tpl(topic, partition)) {
            tracing::warn!(topic, partition, %err, "could not resume a partition");
        }
    }

    async fn commit(&mut self, commits: &[Commit]) -> Result<(), StoreError> {
        if commits.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for c in commits {
            tpl.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.next_offset))
                .map_err(kafka_error)?;
        }
        let consumer = self.consumer.clone();
        let group = self.group.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
            .map_err(|err| kafka_error(format!("commit of group `{group}`: {err}")))
    }
}
