//! The Kafka back end of the message log.
//!
//! This module owns how Sluice talks to Kafka: the producer settings that
//! make an acknowledged write durable (idempotent producer, `acks=all`,
//! zstd), the consumer settings that leave offset commits to the caller,
//! topic administration, and a reachability probe whose error tells the
//! operator which server is missing and how to start it.
//!
//! [`KafkaLog`] implements [`crate::MessageLog`]:
//! - Appends go through one idempotent `acks=all` producer
//!   ([`KafkaConfig::producer`]) to the partition [`partition_for`] picks, so a
//!   key lands on the same partition index as in the embedded log.
//! - Reads use one assign-only consumer per (topic, partition), kept while
//!   reads continue where the previous one stopped; another `from` re-assigns.
//! - Group offsets are Kafka's committed offsets, written and read by one
//!   never-subscribing consumer per group (assign-style commits).
//! - Group members ([`KafkaConsumer`]) are subscribed consumers; their
//!   rebalances become [`crate::Rebalance`] events (`context`).
//!
//! rdkafka's consumer calls block, so they run on tokio's blocking pool.
//! Every rdkafka error becomes a [`LogError`] through
//! [`LogError::from_kafka`], naming the brokers.

mod admin;
mod config;
mod consumer;
mod context;
mod health;
mod lag;
mod message_log;
mod read;

pub use admin::{create_topic, create_topic_as, probe};
pub use config::KafkaConfig;
pub use consumer::KafkaConsumer;
pub use health::{TopicHealth, topic_health};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::{LogError, NewRecord, Position, check_group, check_record, partition_for};
use read::Reader;

/// Timeout of metadata, watermark and offset requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the blocking call `op` again while a new topic's partitions are
/// still getting their leaders, for up to [`REQUEST_TIMEOUT`]. Called only
/// on the blocking pool (inside [`blocking`]), where sleeping is fine.
#[allow(clippy::disallowed_methods)]
fn while_settling<T>(mut op: impl FnMut() -> Result<T, KafkaError>) -> Result<T, KafkaError> {
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        match op() {
            Err(KafkaError::MetadataFetch(code))
                if settling_code(code) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Answers a new topic gives while its partitions get their leaders, and a
/// fresh cluster gives while its group coordinators load (an unknown topic
/// is not one of them: it fails at once).
fn settling_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
    )
}
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

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.inner.config.brokers)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Connects to the cluster: fails with [`LogError::Unavailable`] (which
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
        let producer: FutureProducer = config.producer().create().map_err(config.fail(None))?;
        let meta: BaseConsumer = config.admin().create().map_err(config.fail(None))?;
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
    async fn partition_count(&self, topic: &str) -> Result<i32, LogError> {
        if let Some(n) = lock(&self.inner.partitions).get(topic) {
            return Ok(*n);
        }
        let n = self.fetch_partition_count(topic).await?;
        lock(&self.inner.partitions).insert(topic.to_owned(), n);
        Ok(n)
    }

    /// Asks the cluster; a topic that was just created can answer "no
    /// leader yet" for a moment, which is retried for up to
    /// [`REQUEST_TIMEOUT`] instead of failing the caller (sleeping on the
    /// blocking pool, not on an async worker).
    #[allow(clippy::disallowed_methods)]
    async fn fetch_partition_count(&self, topic: &str) -> Result<i32, LogError> {
        let (inner, name) = (self.inner.clone(), topic.to_owned());
        blocking(move || {
            let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
            loop {
                let found = inner
                    .meta
                    .fetch_metadata(Some(&name), REQUEST_TIMEOUT)
                    .map(|m| {
                        let t = m.topics().iter().find(|t| t.name() == name);
                        t.map(|t| (t.error(), t.partitions().len()))
                    });
                let settling = match &found {
                    Ok(Some((None, n))) if *n > 0 => return Ok(*n as i32),
                    Ok(Some((Some(code), _))) => settling_code((*code).into()),
                    Err(KafkaError::MetadataFetch(code)) => settling_code(*code),
                    _ => false,
                };
                if !settling || std::time::Instant::now() >= deadline {
                    return match found {
                        Err(err) => Err(inner.config.fail(Some(&name))(err)),
                        Ok(_) => Err(LogError::TopicNotFound { topic: name }),
                    };
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .await
    }

    async fn check_partition(&self, topic: &str, partition: i32) -> Result<(), LogError> {
        let partitions = self.partition_count(topic).await?;
        if (0..partitions).contains(&partition) {
            Ok(())
        } else {
            Err(LogError::PartitionNotFound {
                topic: topic.to_owned(),
                partition,
                partitions,
            })
        }
    }

    /// The consumer `group` commits and looks up its offsets with.
    fn group_consumer(&self, group: &str) -> Result<Arc<BaseConsumer>, LogError> {
        check_group(group)?;
        let mut groups = lock(&self.inner.groups);
        if let Some(consumer) = groups.get(group) {
            return Ok(consumer.clone());
        }
        let config = &self.inner.config;
        let consumer: BaseConsumer = config.consumer(group).create().map_err(config.fail(None))?;
        let consumer = Arc::new(consumer);
        groups.insert(group.to_owned(), consumer.clone());
        Ok(consumer)
    }

    fn reader(&self, topic: &str, partition: i32) -> Result<Arc<Mutex<Reader>>, LogError> {
        let mut readers = lock(&self.inner.readers);
        let key = (topic.to_owned(), partition);
        if let Some(reader) = readers.get(&key) {
            return Ok(reader.clone());
        }
        let config = &self.inner.config;
        let consumer: BaseConsumer = config.reader().create().map_err(config.fail(None))?;
        let reader = Arc::new(Mutex::new(Reader::new(consumer, &config.brokers)));
        readers.insert(key, reader.clone());
        Ok(reader)
    }

    /// Hands a record to the producer without waiting for room.
    fn send(&self, record: Outgoing<'_>) -> Result<Pending, LogError> {
        let topic = record.topic;
        let partitions = lock(&self.inner.partitions)
            .get(topic)
            .copied()
            .ok_or_else(|| LogError::TopicNotFound {
                topic: topic.to_owned(),
            })?;
        match self
            .inner
            .producer
            .send_result(produced(record, partitions))
        {
            Ok(delivery) => Ok(Pending::Queued(delivery)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Ok(Pending::QueueFull)
            }
            Err((err, _)) => Err(self.produce_error(err, topic, record.size())),
        }
    }

    /// Appends one record with its headers, waiting up to [`QUEUE_TIMEOUT`]
    /// for room in the producer's queue, then for the acknowledgement.
    async fn append_one(&self, record: Outgoing<'_>) -> Result<Position, LogError> {
        check_record(record.topic, record.key, record.payload, record.headers)?;
        let partitions = self.partition_count(record.topic).await?;
        let delivery = self
            .inner
            .producer
            .send(produced(record, partitions), QUEUE_TIMEOUT)
            .await
            .map_err(|(err, _)| self.produce_error(err, record.topic, record.size()))?;
        Ok(Position {
            partition: delivery.partition,
            offset: delivery.offset,
        })
    }

    /// Waits for a queued record's acknowledgement.
    async fn delivered(
        &self,
        topic: &str,
        size: usize,
        delivery: DeliveryFuture,
    ) -> Result<Position, LogError> {
        let delivery = delivery
            .await
            .map_err(|_| LogError::Internal("the Kafka producer dropped a delivery report".into()))?
            .map_err(|(err, _)| self.produce_error(err, topic, size))?;
        Ok(Position {
            partition: delivery.partition,
            offset: delivery.offset,
        })
    }

    /// A producer error for a record of `size` bytes to `topic`.
    fn produce_error(&self, err: KafkaError, topic: &str, size: usize) -> LogError {
        LogError::from_kafka(err, &self.inner.config.brokers, Some(topic)).with_size(size)
    }
}

/// `record` as the producer sends it to a topic of `partitions`
/// partitions: to the partition [`partition_for`] picks, with its headers
/// (none are attached when it has none).
fn produced(record: Outgoing<'_>, partitions: i32) -> FutureRecord<'_, [u8], [u8]> {
    let produced = FutureRecord::to(record.topic)
        .partition(partition_for(record.key, partitions))
        .key(record.key)
        .payload(record.payload);
    if record.headers.is_empty() {
        return produced;
    }
    produced.headers(owned_headers(record.headers))
}

/// A record to produce, borrowed: a plain append copies nothing before the
/// producer does.
#[derive(Clone, Copy)]
pub(super) struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub payload: &'a [u8],
    pub headers: &'a [(String, Vec<u8>)],
}

impl<'a> Outgoing<'a> {
    fn size(&self) -> usize {
        crate::log::record_size(self.key, self.payload, self.headers)
    }
}

impl<'a> From<&'a NewRecord> for Outgoing<'a> {
    fn from(r: &'a NewRecord) -> Self {
        Self {
            topic: &r.topic,
            key: &r.key,
            payload: &r.payload,
            headers: &r.headers,
        }
    }
}

/// `headers` as rdkafka sends them, in order.
fn owned_headers(headers: &[(String, Vec<u8>)]) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |owned, (name, value)| {
            owned.insert(Header {
                key: name,
                value: Some(value.as_slice()),
            })
        },
    )
}

/// Headers of a consumed message; a header without a value (null) gets an
/// empty one.
fn read_headers(message: &impl rdkafka::Message) -> crate::Headers {
    use rdkafka::message::Headers as _;
    let Some(headers) = message.headers() else {
        return Vec::new();
    };
    headers
        .iter()
        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
        .collect()
}

/// A record handed to the producer, or one that did not fit in its queue.
enum Pending {
    Queued(DeliveryFuture),
    QueueFull,
}

impl KafkaConfig {
    /// Maps an rdkafka error of a call to this cluster (about `topic`).
    pub(crate) fn fail<'a>(
        &'a self,
        topic: Option<&'a str>,
    ) -> impl Fn(KafkaError) -> LogError + 'a {
        move |err| LogError::from_kafka(err, &self.brokers, topic)
    }
}

/// Runs a blocking rdkafka call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| LogError::Internal(format!("a Kafka client task failed: {err}")))?
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
