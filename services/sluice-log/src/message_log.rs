//! [`MessageLog`] on Kafka: the distributed back end of the trait whose
//! embedded back end is `sluice_store::EmbeddedLog`.
//!
//! - Appends go through one idempotent `acks=all` producer
//!   ([`KafkaConfig::producer`]) to the partition [`partition_for`] picks, so a
//!   key lands on the same partition index as in the embedded log.
//! - Reads use one assign-only consumer per (topic, partition), kept while
//!   reads continue where the previous one stopped; another `from` re-assigns.
//! - Group offsets are Kafka's committed offsets, written and read by one
//!   never-subscribing consumer per group (assign-style commits).
//!
//! rdkafka's consumer calls block, so they run on tokio's blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_store::{
    MessageLog, NewRecord, Position, ReadLimit, Record, StoreError, check_group, check_topic,
    partition_for,
};

use crate::{KafkaConfig, LogError, probe};

/// Timeout of metadata, watermark and offset requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a send may wait for room in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a freshly created topic may take to show up in the metadata.
const CREATE_VISIBLE: Duration = Duration::from_secs(10);

/// The Sluice message log on a Kafka cluster. Cheap to clone; clones share
/// the producer and the cached consumers.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    producer: FutureProducer,
    /// Metadata and watermark requests.
    meta: BaseConsumer,
    /// Partition counts seen so far (a topic's count never changes in Sluice).
    partitions: Mutex<HashMap<String, i32>>,
    readers: Mutex<Readers>,
    groups: Mutex<HashMap<String, Arc<BaseConsumer>>>,
}

/// Cached readers by (topic, partition).
type Readers = HashMap<(String, i32), Arc<Mutex<Reader>>>;

/// An assign-only consumer of one partition.
struct Reader {
    consumer: BaseConsumer,
    /// The offset the consumer's queue continues at, if it is assigned.
    next: Option<i64>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.inner.config.brokers)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Connects to the cluster: fails with [`LogError::Unreachable`] (which
    /// says how to start a broker) when none answers within 10 s.
    pub async fn connect(config: KafkaConfig) -> Result<Self, LogError> {
        Self::connect_within(config, REQUEST_TIMEOUT).await
    }

    /// [`KafkaLog::connect`], waiting at most `timeout` for a broker.
    pub async fn connect_within(config: KafkaConfig, timeout: Duration) -> Result<Self, LogError> {
        probe(&config, timeout).await?;
        Self::lazy(config)
    }

    /// The log on a cluster that may not be up yet: clients connect in the
    /// background, and calls fail or time out until a broker answers.
    pub fn lazy(config: KafkaConfig) -> Result<Self, LogError> {
        let producer: FutureProducer = config.producer().create()?;
        let meta: BaseConsumer = config.admin().create()?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer,
                meta,
                partitions: Mutex::new(HashMap::new()),
                readers: Mutex::new(HashMap::new()),
                groups: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The cluster configuration this log talks to.
    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    /// Partition count of `topic`, from the cache or the cluster's metadata.
    async fn partition_count(&self, topic: &str) -> Result<i32, StoreError> {
        if let Some(n) = lock(&self.inner.partitions).get(topic) {
            return Ok(*n);
        }
        let n = self.fetch_partition_count(topic).await?;
        lock(&self.inner.partitions).insert(topic.to_owned(), n);
        Ok(n)
    }

    async fn fetch_partition_count(&self, topic: &str) -> Result<i32, StoreError> {
        let (inner, name) = (self.inner.clone(), topic.to_owned());
        blocking(move || {
            let metadata = inner
                .meta
                .fetch_metadata(Some(&name), REQUEST_TIMEOUT)
                .map_err(kafka_error)?;
            let found = metadata.topics().iter().find(|t| t.name() == name);
            match found {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    Ok(t.partitions().len() as i32)
                }
                _ => Err(StoreError::UnknownTopic { topic: name }),
            }
        })
        .await
    }

    async fn check_partition(&self, topic: &str, partition: i32) -> Result<(), StoreError> {
        let partitions = self.partition_count(topic).await?;
        if (0..partitions).contains(&partition) {
            Ok(())
        } else {
            Err(StoreError::NoSuchPartition {
                topic: topic.to_owned(),
                partition,
                partitions,
            })
        }
    }

    /// The consumer `group` commits and looks up its offsets with.
    fn group_consumer(&self, group: &str) -> Result<Arc<BaseConsumer>, StoreError> {
        check_group(group)?;
        let mut groups = lock(&self.inner.groups);
        if let Some(consumer) = groups.get(group) {
            return Ok(consumer.clone());
        }
        let consumer: BaseConsumer = self
            .inner
            .config
            .consumer(group)
            .create()
            .map_err(kafka_error)?;
        let consumer = Arc::new(consumer);
        groups.insert(group.to_owned(), consumer.clone());
        Ok(consumer)
    }

    fn reader(&self, topic: &str, partition: i32) -> Result<Arc<Mutex<Reader>>, StoreError> {
        let mut readers = lock(&self.inner.readers);
        let key = (topic.to_owned(), partition);
        if let Some(reader) = readers.get(&key) {
            return Ok(reader.clone());
        }
        let consumer: BaseConsumer = self.inner.config.reader().create().map_err(kafka_error)?;
        let reader = Arc::new(Mutex::new(Reader {
            consumer,
            next: None,
        }));
        readers.insert(key, reader.clone());
        Ok(reader)
    }

    fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<Pending, StoreError> {
        let partitions = lock(&self.inner.partitions)
            .get(topic)
            .copied()
            .ok_or_else(|| StoreError::UnknownTopic {
                topic: topic.to_owned(),
            })?;
        let record = FutureRecord::to(topic)
            .partition(partition_for(key, partitions))
            .key(key)
            .payload(payload);
        match self.inner.producer.send_result(record) {
            Ok(delivery) => Ok(Pending::Queued(delivery)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Ok(Pending::QueueFull)
            }
            Err((err, _)) => Err(kafka_error(err)),
        }
    }

    async fn append_one(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> Result<Position, StoreError> {
        let partitions = self.partition_count(topic).await?;
        let record = FutureRecord::to(topic)
            .partition(partition_for(key, partitions))
            .key(key)
            .payload(payload);
        let delivery = self
            .inner
            .producer
            .send(record, QUEUE_TIMEOUT)
            .await
            .map_err(|(err, _)| kafka_error(err))?;
        Ok(Position {
            partition: delivery.partition,
            offset: delivery.offset,
        })
    }
}

/// A record handed to the producer, or one that did not fit in its queue.
enum Pending {
    Queued(DeliveryFuture),
    QueueFull,
}

async fn delivered(delivery: DeliveryFuture) -> Result<Position, StoreError> {
    let delivery = delivery
        .await
        .map_err(|_| StoreError::Task("Kafka producer dropped a delivery report".into()))?
        .map_err(|(err, _)| kafka_error(err))?;
    Ok(Position {
        partition: delivery.partition,
        offset: delivery.offset,
    })
}

impl MessageLog for KafkaLog {
    type Consumer = crate::KafkaConsumer;

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<crate::KafkaConsumer, StoreError> {
        crate::KafkaConsumer::subscribe(&self.inner.config, group, topics)
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), StoreError> {
        check_topic(topic)?;
        if partitions < 1 {
            return Err(StoreError::BadPartitionCount {
                topic: topic.to_owned(),
                partitions,
            });
        }
        crate::create_topic(&self.inner.config, topic, partitions)
            .await
            .map_err(kafka_error)?;
        // The broker's metadata may lag the controller for a moment.
        let deadline = Instant::now() + CREATE_VISIBLE;
        let existing = loop {
            match self.fetch_partition_count(topic).await {
                Err(StoreError::UnknownTopic { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => break other?,
            }
        };
        lock(&self.inner.partitions).insert(topic.to_owned(), existing);
        if existing != partitions {
            return Err(StoreError::PartitionMismatch {
                topic: topic.to_owned(),
                existing,
                requested: partitions,
            });
        }
        Ok(())
    }

    async fn partitions(&self, topic: &str) -> Result<i32, StoreError> {
        self.partition_count(topic).await
    }

    async fn append(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> Result<Position, StoreError> {
        self.append_one(topic, key, payload).await
    }

    /// Not atomic on Kafka: records are sent together, and when one fails the
    /// ones before it may already be in the log.
    async fn append_batch(&self, records: Vec<NewRecord>) -> Result<Vec<Position>, StoreError> {
        // Every topic must exist before anything is sent.
        for record in &records {
            self.partition_count(&record.topic).await?;
        }
        let mut positions = Vec::with_capacity(records.len());
        let mut queued = Vec::new();
        for record in &records {
            match self.send(&record.topic, &record.key, &record.payload)? {
                Pending::Queued(delivery) => queued.push(delivery),
                Pending::QueueFull => {
                    // Drain what is in flight, then wait for room for this one.
                    for delivery in queued.drain(..) {
                        positions.push(delivered(delivery).await?);
                    }
                    positions.push(
                        self.append_one(&record.topic, &record.key, &record.payload)
                            .await?,
                    );
                }
            }
        }
        for delivery in queued {
            positions.push(delivered(delivery).await?);
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
    ) -> Result<Vec<Record>, StoreError> {
        self.check_partition(topic, partition).await?;
        let reader = self.reader(topic, partition)?;
        let topic = topic.to_owned();
        blocking(move || {
            let mut reader = lock(&reader);
            read_blocking(&mut reader, &topic, partition, from, limit, wait)
        })
        .await
    }

    async fn join(&self, group: &str, topic: &str) -> Result<(), StoreError> {
        let partitions = self.partition_count(topic).await?;
        let consumer = self.group_consumer(group)?;
        let topic = topic.to_owned();
        blocking(move || {
            let mut query = TopicPartitionList::new();
            for p in 0..partitions {
                query.add_partition(&topic, p);
            }
            let committed = consumer
                .committed_offsets(query, REQUEST_TIMEOUT)
                .map_err(kafka_error)?;
            let mut start = TopicPartitionList::new();
            for elem in committed.elements() {
                if !matches!(elem.offset(), Offset::Offset(_)) {
                    let (low, _) = consumer
                        .fetch_watermarks(&topic, elem.partition(), REQUEST_TIMEOUT)
                        .map_err(kafka_error)?;
                    start
                        .add_partition_offset(&topic, elem.partition(), Offset::Offset(low))
                        .map_err(kafka_error)?;
                }
            }
            if start.count() > 0 {
                consumer
                    .commit(&start, CommitMode::Sync)
                    .map_err(kafka_error)?;
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
    ) -> Result<Option<i64>, StoreError> {
        self.check_partition(topic, partition).await?;
        let consumer = self.group_consumer(group)?;
        let topic = topic.to_owned();
        blocking(move || {
            let mut query = TopicPartitionList::new();
            query.add_partition(&topic, partition);
            let committed = consumer
                .committed_offsets(query, REQUEST_TIMEOUT)
                .map_err(kafka_error)?;
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
    ) -> Result<(), StoreError> {
        self.check_partition(topic, partition).await?;
        let consumer = self.group_consumer(group)?;
        let (topic, group) = (topic.to_owned(), group.to_owned());
        blocking(move || {
            let (_, end) = consumer
                .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                .map_err(kafka_error)?;
            if !(0..=end).contains(&next_offset) {
                return Err(StoreError::OffsetOutOfRange {
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
                .map_err(kafka_error)?;
            consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(kafka_error)
        })
        .await
    }
}

/// One read of a partition on its cached consumer: re-assigns unless the
/// consumer already continues at `from`, waits up to `wait` for the first
/// record, then takes what is already fetched up to `limit`.
fn read_blocking(
    reader: &mut Reader,
    topic: &str,
    partition: i32,
    from: i64,
    limit: ReadLimit,
    wait: Duration,
) -> Result<Vec<Record>, StoreError> {
    if reader.next != Some(from) {
        reader.next = None;
        let start = if from < 0 {
            // Negative raw offsets are rdkafka's logical offsets.
            Offset::Beginning
        } else {
            Offset::Offset(from)
        };
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, start)
            .map_err(kafka_error)?;
        reader.consumer.assign(&assignment).map_err(kafka_error)?;
    }
    let deadline = Instant::now() + wait;
    let mut out: Vec<Record> = Vec::new();
    let mut bytes = 0;
    while out.len() < limit.max_records && (out.is_empty() || bytes < limit.max_bytes) {
        let timeout = if out.is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        match reader.consumer.poll(timeout) {
            Some(Ok(message)) => {
                // Below `from` only after a `from` beyond the end made the
                // consumer restart at the earliest record: skip forward.
                if message.offset() < from {
                    continue;
                }
                let key = message.key().unwrap_or_default().to_vec();
                let payload = message.payload().unwrap_or_default().to_vec();
                bytes += key.len() + payload.len();
                out.push(Record {
                    partition,
                    offset: message.offset(),
                    key,
                    payload,
                });
            }
            Some(Err(err)) => {
                // Error events (transport hiccups, which librdkafka retries)
                // come once each: note them and keep polling.
                tracing::debug!(%topic, partition, error = %err, "kafka read");
                if !out.is_empty() {
                    break;
                }
            }
            None if out.is_empty() && Instant::now() < deadline => {}
            None => break,
        }
    }
    reader.next = Some(out.last().map_or(from, |r| r.offset + 1));
    Ok(out)
}

/// Kafka failures have no variant of their own in [`StoreError`]; they are
/// reported as a failed log task naming Kafka.
fn kafka_error(err: impl std::fmt::Display) -> StoreError {
    StoreError::Task(format!("Kafka: {err}"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| StoreError::Task(err.to_string()))?
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
