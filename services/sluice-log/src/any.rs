//! [`Log`]: the message log a service was configured with, Kafka or the
//! embedded store, behind one concrete type, so services are written once.

use std::time::Duration;

use crate::TopicSpec;
use crate::{
    Commit, Delivery, EmbeddedConsumer, EmbeddedLog, GroupConsumer, KafkaConsumer, KafkaLog,
    LogError, MessageLog, NewRecord, PartitionLag, Position, ReadLimit, Rebalance, Record,
};

/// The message log: a Kafka cluster or an embedded data directory.
#[derive(Clone, Debug)]
pub enum Log {
    Kafka(KafkaLog),
    Embedded(EmbeddedLog),
}

/// A consumer-group member of a [`Log`].
#[derive(Debug)]
pub enum LogConsumer {
    Kafka(KafkaConsumer),
    Embedded(EmbeddedConsumer),
}

impl From<KafkaLog> for Log {
    fn from(log: KafkaLog) -> Self {
        Self::Kafka(log)
    }
}

impl From<EmbeddedLog> for Log {
    fn from(log: EmbeddedLog) -> Self {
        Self::Embedded(log)
    }
}

/// Partitions of the topics services create when they are missing. An
/// operator may create them beforehand with more; services keep whatever
/// count a topic has.
pub const DEFAULT_PARTITIONS: i32 = 4;

impl Log {
    /// Creates every topic of `topics` that does not exist yet, with
    /// [`DEFAULT_PARTITIONS`] partitions; existing topics are kept as they are.
    pub async fn ensure_topics(&self, topics: &[String]) -> Result<(), LogError> {
        let spec = TopicSpec::default();
        let specs: Vec<(String, TopicSpec)> = topics.iter().map(|t| (t.clone(), spec)).collect();
        self.ensure_topics_as(&specs).await
    }

    /// Creates every topic of `topics` that does not exist yet as its spec
    /// says (the embedded log uses the partition count only); existing topics
    /// are kept as they are.
    pub async fn ensure_topics_as(&self, topics: &[(String, TopicSpec)]) -> Result<(), LogError> {
        for (topic, spec) in topics {
            let created = match self {
                Log::Kafka(log) => log.create_topic_as(topic, spec).await,
                Log::Embedded(log) => log.create_topic(topic, spec.partitions).await,
            };
            match created {
                Ok(()) | Err(LogError::PartitionMismatch { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// Calls the same method on whichever back end `$log` holds.
macro_rules! both {
    ($log:expr, $l:ident => $call:expr) => {
        match $log {
            Log::Kafka($l) => $call,
            Log::Embedded($l) => $call,
        }
    };
}

impl MessageLog for Log {
    type Consumer = LogConsumer;

    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<LogConsumer, LogError> {
        Ok(match self {
            Log::Kafka(l) => LogConsumer::Kafka(l.subscribe(group, topics).await?),
            Log::Embedded(l) => LogConsumer::Embedded(l.subscribe(group, topics).await?),
        })
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), LogError> {
        both!(self, l => l.create_topic(topic, partitions).await)
    }

    async fn partitions(&self, topic: &str) -> Result<i32, LogError> {
        both!(self, l => l.partitions(topic).await)
    }

    async fn append(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<Position, LogError> {
        both!(self, l => l.append(topic, key, payload).await)
    }

    async fn append_record(&self, record: NewRecord) -> Result<Position, LogError> {
        both!(self, l => l.append_record(record).await)
    }

    async fn append_batch(&self, records: Vec<NewRecord>) -> Result<Vec<Position>, LogError> {
        both!(self, l => l.append_batch(records).await)
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        limit: ReadLimit,
        wait: Duration,
    ) -> Result<Vec<Record>, LogError> {
        both!(self, l => l.read(topic, partition, from, limit, wait).await)
    }

    async fn join(&self, group: &str, topic: &str) -> Result<(), LogError> {
        both!(self, l => l.join(group, topic).await)
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LogError> {
        both!(self, l => l.committed(group, topic, partition).await)
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), LogError> {
        both!(self, l => l.commit(group, topic, partition, next_offset).await)
    }
}

/// [`both!`] for [`LogConsumer`].
macro_rules! member {
    ($c:expr, $m:ident => $call:expr) => {
        match $c {
            LogConsumer::Kafka($m) => $call,
            LogConsumer::Embedded($m) => $call,
        }
    };
}

impl GroupConsumer for LogConsumer {
    async fn poll_at_most(
        &mut self,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, LogError> {
        member!(self, c => c.poll_at_most(wait, max).await)
    }

    fn pause(&mut self, topic: &str, partition: i32) {
        member!(self, c => c.pause(topic, partition))
    }

    fn resume(&mut self, topic: &str, partition: i32) {
        member!(self, c => c.resume(topic, partition))
    }

    fn rebalances(&mut self) -> Vec<Rebalance> {
        member!(self, c => c.rebalances())
    }

    fn leave(&mut self) {
        member!(self, c => c.leave())
    }

    fn fence(&self) -> crate::Fence {
        member!(self, c => c.fence())
    }

    async fn commit(&mut self, commits: &[Commit]) -> Result<(), LogError> {
        member!(self, c => c.commit(commits).await)
    }

    fn lag(&self) -> impl Future<Output = Result<Vec<PartitionLag>, LogError>> + Send + use<> {
        use futures::future::Either;
        match self {
            LogConsumer::Kafka(c) => Either::Left(c.lag()),
            LogConsumer::Embedded(c) => Either::Right(c.lag()),
        }
    }
}
