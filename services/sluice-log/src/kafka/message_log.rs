//! [`MessageLog`] for [`KafkaLog`].

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{
    CREATE_VISIBLE, KafkaLog, Outgoing, Pending, REQUEST_TIMEOUT, blocking, lock, read,
    while_settling,
};
use crate::{LogError, MessageLog, NewRecord, Position, ReadLimit, Record, TopicSpec, check_topic};

impl MessageLog for KafkaLog {
    type Consumer = crate::KafkaConsumer;

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<crate::KafkaConsumer, LogError> {
        crate::KafkaConsumer::subscribe(&self.inner.config, group, topics)
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), LogError> {
        self.create_topic_as(topic, &TopicSpec::with_partitions(partitions))
            .await
    }

    async fn partitions(&self, topic: &str) -> Result<i32, LogError> {
        self.partition_count(topic).await
    }

    async fn append(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<Position, LogError> {
        let record = Outgoing {
            topic,
            key,
            payload,
            headers: &[],
        };
        self.append_one(record).await
    }

    async fn append_record(&self, record: NewRecord) -> Result<Position, LogError> {
        self.append_one((&record).into()).await
    }

    /// Not atomic on Kafka: records are sent together, and when one fails the
    /// ones before it may already be in the log.
    async fn append_batch(&self, records: Vec<NewRecord>) -> Result<Vec<Position>, LogError> {
        // Every topic must exist and every record fit before anything is sent.
        for record in &records {
            record.check()?;
            self.partition_count(&record.topic).await?;
        }
        let mut positions = Vec::with_capacity(records.len());
        let mut queued = Vec::new();
        for record in &records {
            match self.send(record.into())? {
                Pending::Queued(delivery) => {
                    queued.push((&record.topic, record.size(), delivery));
                }
                Pending::QueueFull => {
                    // Drain what is in flight, then wait for room for this one.
                    for (topic, size, delivery) in queued.drain(..) {
                        positions.push(self.delivered(topic, size, delivery).await?);
                    }
                    positions.push(self.append_one(record.into()).await?);
                }
            }
        }
        for (topic, size, delivery) in queued {
            positions.push(self.delivered(topic, size, delivery).await?);
        }
        Ok(positions)
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        limit: ReadLimit,
        wait: Duration,
    ) -> Result<Vec<Record>, LogError> {
        self.check_partition(topic, partition).await?;
        let reader = self.reader(topic, partition)?;
        let topic = topic.to_owned();
        blocking(move || {
            let mut reader = lock(&reader);
            read::read_blocking(&mut reader, &topic, partition, from, limit, wait)
        })
        .await
    }

    async fn join(&self, group: &str, topic: &str) -> Result<(), LogError> {
        let partitions = self.partition_count(topic).await?;
        let consumer = self.group_consumer(group)?;
        let topic = topic.to_owned();
        let config = self.inner.config.clone();
        blocking(move || {
            let mut query = TopicPartitionList::new();
            for p in 0..partitions {
                query.add_partition(&topic, p);
            }
            let committed =
                while_settling(|| consumer.committed_offsets(query.clone(), REQUEST_TIMEOUT))
                    .map_err(config.fail(Some(&topic)))?;
            let mut start = TopicPartitionList::new();
            for elem in committed.elements() {
                if !matches!(elem.offset(), Offset::Offset(_)) {
                    let (low, _) = while_settling(|| {
                        consumer.fetch_watermarks(&topic, elem.partition(), REQUEST_TIMEOUT)
                    })
                    .map_err(config.fail(Some(&topic)))?;
                    start
                        .add_partition_offset(&topic, elem.partition(), Offset::Offset(low))
                        .map_err(config.fail(Some(&topic)))?;
                }
            }
            if start.count() > 0 {
                consumer
                    .commit(&start, CommitMode::Sync)
                    .map_err(config.fail(Some(&topic)))?;
            }
            Ok(())
        })
        .await
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LogError> {
        self.check_partition(topic, partition).await?;
        let consumer = self.group_consumer(group)?;
        let topic = topic.to_owned();
        let config = self.inner.config.clone();
        blocking(move || {
            let mut query = TopicPartitionList::new();
            query.add_partition(&topic, partition);
            let committed =
                while_settling(|| consumer.committed_offsets(query.clone(), REQUEST_TIMEOUT))
                    .map_err(config.fail(Some(&topic)))?;
            Ok(committed
                .elements()
                .iter()
                .find(|e| e.partition() == partition)
                .and_then(|e| match e.offset() {
                    Offset::Offset(n) => Some(n),
                    _ => None,
                }))
        })
        .await
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), LogError> {
        self.check_partition(topic, partition).await?;
        let consumer = self.group_consumer(group)?;
        let (topic, group) = (topic.to_owned(), group.to_owned());
        let config = self.inner.config.clone();
        blocking(move || {
            let (_, end) =
                while_settling(|| consumer.fetch_watermarks(&topic, partition, REQUEST_TIMEOUT))
                    .map_err(config.fail(Some(&topic)))?;
            if !(0..=end).contains(&next_offset) {
                return Err(LogError::OffsetOutOfRange {
                    group,
                    topic,
                    partition,
                    offset: next_offset,
                    end,
                });
            }
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(&topic, partition, Offset::Offset(next_offset))
                .map_err(config.fail(Some(&topic)))?;
            consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(config.fail(Some(&topic)))
        })
        .await
    }
}

impl KafkaLog {
    /// Creates `topic` as `spec` says unless it exists; fails with
    /// [`LogError::PartitionMismatch`] when it exists with another partition
    /// count (the existing topic is kept).
    pub async fn create_topic_as(&self, topic: &str, spec: &TopicSpec) -> Result<(), LogError> {
        let partitions = spec.partitions;
        check_topic(topic)?;
        if partitions < 1 {
            return Err(LogError::BadPartitionCount {
                topic: topic.to_owned(),
                partitions,
            });
        }
        crate::create_topic_as(&self.inner.config, topic, spec).await?;
        // The broker's metadata may lag the controller for a moment.
        let deadline = Instant::now() + CREATE_VISIBLE;
        let existing = loop {
            match self.fetch_partition_count(topic).await {
                Err(LogError::TopicNotFound { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => break other?,
            }
        };
        lock(&self.inner.partitions).insert(topic.to_owned(), existing);
        if existing != partitions {
            return Err(LogError::PartitionMismatch {
                topic: topic.to_owned(),
                existing,
                requested: partitions,
            });
        }
        Ok(())
    }
}
