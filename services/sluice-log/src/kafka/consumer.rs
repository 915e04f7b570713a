//! [`GroupConsumer`] on Kafka: a subscribed consumer of the group, so Kafka's
//! group protocol shares the partitions between members and moves them when
//! members come and go. Commits are synchronous, on tokio's blocking pool.
//! Rebalances arrive from [`RebalanceContext`] as [`Rebalance`] events.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::context::RebalanceContext;
use crate::group::push_rebalance;
use crate::{
    Commit, Delivery, Fence, GroupConsumer, KafkaConfig, LogError, PartitionLag, Rebalance,
    check_group,
};

/// A member of a Kafka consumer group.
pub struct KafkaConsumer {
    consumer: Arc<StreamConsumer<RebalanceContext>>,
    /// A client of the same group that never joins it: it asks the brokers
    /// for the group's committed offsets and the watermarks when the lag is
    /// measured, so a slow answer never holds the member itself (whose
    /// close, when it leaves, would wait for it).
    watcher: Arc<BaseConsumer>,
    group: String,
    brokers: String,
    /// Rebalance events from the consumer's context.
    events: UnboundedReceiver<Rebalance>,
    /// Events a poll took off the channel, for [`GroupConsumer::rebalances`].
    pending: VecDeque<Rebalance>,
    /// Closed by the context the moment partitions are revoked.
    fence: Fence,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("group", &self.group)
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

impl KafkaConsumer {
    /// Joins `group` and subscribes to `topics` (assignment follows with the
    /// first polls, as a [`Rebalance::Assigned`] event).
    pub(crate) fn subscribe(
        config: &KafkaConfig,
        group: &str,
        topics: &[String],
    ) -> Result<Self, LogError> {
        check_group(group)?;
        let (sender, events) = mpsc::unbounded_channel();
        let fence = Fence::default();
        let consumer: StreamConsumer<RebalanceContext> = config
            .consumer(group)
            .set(
                "max.partition.fetch.bytes",
                crate::MAX_RECORD_BYTES.to_string(),
            )
            .create_with_context(RebalanceContext::new(group, sender, fence.clone()))
            .map_err(config.fail(None))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(config.fail(None))?;
        let watcher: BaseConsumer = config.consumer(group).create().map_err(config.fail(None))?;
        Ok(Self {
            consumer: Arc::new(consumer),
            watcher: Arc::new(watcher),
            group: group.to_owned(),
            brokers: config.brokers.clone(),
            events,
            pending: VecDeque::new(),
            fence,
        })
    }

    fn tpl(topic: &str, partition: i32) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        tpl
    }

    fn fail(&self, err: rdkafka::error::KafkaError) -> LogError {
        LogError::from_kafka(err, &self.brokers, None)
    }

    /// Waits up to `wait` for the first record; `None` when none came or a
    /// rebalance event arrived first (it is kept for `rebalances`).
    async fn first(&mut self, wait: Duration) -> Result<Option<Delivery>, LogError> {
        let received = tokio::select! {
            // Both are cancel-safe: the loser loses nothing.
            msg = tokio::time::timeout(wait, self.consumer.recv()) => msg,
            Some(event) = self.events.recv() => {
                push_rebalance(&mut self.pending, event);
                return Ok(None);
            }
        };
        match received {
            Err(_) => Ok(None),
            Ok(msg) => Ok(Some(delivery(&msg.map_err(|e| self.fail(e))?))),
        }
    }
}

fn delivery(msg: &BorrowedMessage<'_>) -> Delivery {
    Delivery {
        topic: msg.topic().to_owned(),
        partition: msg.partition(),
        offset: msg.offset(),
        key: msg.key().unwrap_or_default().to_vec(),
        payload: msg.payload().unwrap_or_default().to_vec(),
        headers: super::read_headers(msg),
    }
}

impl GroupConsumer for KafkaConsumer {
    async fn poll_at_most(
        &mut self,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, LogError> {
        let Some(first) = self.first(wait).await? else {
            return Ok(Vec::new());
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

    fn rebalances(&mut self) -> Vec<Rebalance> {
        while let Ok(event) = self.events.try_recv() {
            push_rebalance(&mut self.pending, event);
        }
        self.pending.drain(..).collect()
    }

    fn leave(&mut self) {
        // librdkafka revokes the assignment on the next poll.
        self.consumer.unsubscribe();
    }

    fn fence(&self) -> Fence {
        self.fence.clone()
    }

    async fn commit(&mut self, commits: &[Commit]) -> Result<(), LogError> {
        if commits.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for c in commits {
            tpl.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.next_offset))
                .map_err(|e| self.fail(e))?;
        }
        let consumer = self.consumer.clone();
        let group = self.group.clone();
        let result = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| LogError::Internal(format!("commit task of group `{group}`: {e}")))?;
        result.map_err(|e| self.fail(e))
    }

    fn lag(&self) -> impl Future<Output = Result<Vec<PartitionLag>, LogError>> + Send + use<> {
        // The member is asked only for its assignment and read positions
        // (librdkafka answers them from its main thread, so even these may
        // wait: never on an async task), and let go before the broker
        // requests, which go through the watcher.
        let (member, watcher) = (self.consumer.clone(), self.watcher.clone());
        let brokers = self.brokers.clone();
        super::blocking(move || {
            let fail = |e| LogError::from_kafka(e, &brokers, None);
            let owned = member.assignment().map_err(fail)?;
            let position = member.position().map_err(fail)?;
            drop(member);
            super::lag::member_lag(&watcher, owned, &position, &brokers)
        })
    }
}
