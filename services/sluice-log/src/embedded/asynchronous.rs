//! [`MessageLog`] for [`EmbeddedLog`]: each call runs its blocking form on
//! tokio's blocking pool (fsync must not stall a runtime worker); reads wait
//! for appends through a [`tokio::sync::Notify`].

use std::time::Duration;

use super::{EmbeddedConsumer, EmbeddedLog};
use crate::{LogError, MessageLog, NewRecord, Position, ReadLimit, Record};

impl EmbeddedLog {
    pub(super) async fn blocking<T, F>(&self, f: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&EmbeddedLog) -> Result<T, LogError> + Send + 'static,
    {
        let log = self.clone();
        tokio::task::spawn_blocking(move || f(&log))
            .await
            .map_err(|e| LogError::Internal(e.to_string()))?
    }
}

impl MessageLog for EmbeddedLog {
    type Consumer = EmbeddedConsumer;

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<EmbeddedConsumer, LogError> {
        self.subscribe_member(group, topics).await
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), LogError> {
        let topic = topic.to_owned();
        self.blocking(move |log| log.create_topic_blocking(&topic, partitions))
            .await
    }

    async fn partitions(&self, topic: &str) -> Result<i32, LogError> {
        self.partitions_blocking(topic)
    }

    async fn append(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<Position, LogError> {
        self.append_record(NewRecord::new(topic, key, payload))
            .await
    }

    async fn append_record(&self, record: NewRecord) -> Result<Position, LogError> {
        // Checked here so that one bad record never fails a shared batch.
        self.partitions_blocking(&record.topic)?;
        record.check()?;
        let (done, position) = tokio::sync::oneshot::channel();
        if self.enqueue(record, done) {
            let log = self.clone();
            tokio::task::spawn_blocking(move || log.flush_pending());
        }
        position
            .await
            .map_err(|_| LogError::Internal("the append flusher stopped".into()))?
    }

    async fn append_batch(&self, records: Vec<NewRecord>) -> Result<Vec<Position>, LogError> {
        self.blocking(move |log| log.append_batch_blocking(&records))
            .await
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        limit: ReadLimit,
        wait: Duration,
    ) -> Result<Vec<Record>, LogError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before reading, so an append between the read and
            // the wait still wakes us.
            let appended = self.inner.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let topic_owned = topic.to_owned();
            let records = self
                .blocking(move |log| log.read_blocking(&topic_owned, partition, from, limit))
                .await?;
            if !records.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(records);
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn join(&self, group: &str, topic: &str) -> Result<(), LogError> {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.blocking(move |log| log.join_blocking(&group, &topic))
            .await
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LogError> {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.blocking(move |log| log.committed_blocking(&group, &topic, partition))
            .await
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), LogError> {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.blocking(move |log| log.commit_blocking(&group, &topic, partition, next_offset))
            .await
    }
}
