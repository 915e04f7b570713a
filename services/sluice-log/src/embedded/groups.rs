//! Consumer groups: committed offsets, and retention below the lowest of them.

use super::{EmbeddedLog, keys, partition_head, topic_heads};
use crate::{LogError, PartitionLag};

/// Most records one commit removes; the rest go with the next commits, so a
/// commit after a long pause does not build one huge batch.
const TRIM_CHUNK: i64 = 10_000;

impl EmbeddedLog {
    /// Blocking form of [`crate::MessageLog::join`].
    pub fn join_blocking(&self, group: &str, topic: &str) -> Result<(), LogError> {
        crate::check_group(group)?;
        let heads = self.lock();
        let parts = topic_heads(&heads, topic)?;
        let mut batch = self.durable_batch();
        let mut fresh = false;
        for (p, head) in parts.iter().enumerate() {
            let key = keys::commit(topic, p as i32, group);
            if self.inner.meta.get(&key)?.is_none() {
                batch.insert(&self.inner.meta, key, head.low.to_be_bytes());
                fresh = true;
            }
        }
        if fresh {
            batch.commit()?;
        }
        Ok(())
    }

    /// Blocking form of [`crate::MessageLog::committed`].
    pub fn committed_blocking(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LogError> {
        crate::check_group(group)?;
        partition_head(&self.lock(), topic, partition)?;
        let value = self.inner.meta.get(keys::commit(topic, partition, group))?;
        value.map(|v| keys::decode_i64(&v)).transpose()
    }

    /// Blocking form of [`crate::MessageLog::commit`]; also removes records
    /// that every group of the topic has committed (at most [`TRIM_CHUNK`]).
    pub fn commit_blocking(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), LogError> {
        crate::check_group(group)?;
        let mut heads = self.lock();
        let head = partition_head(&heads, topic, partition)?;
        if !(0..=head.next).contains(&next_offset) {
            return Err(LogError::OffsetOutOfRange {
                group: group.to_owned(),
                topic: topic.to_owned(),
                partition,
                offset: next_offset,
                end: head.next,
            });
        }
        let lowest = self.lowest_commit(topic, partition, group, next_offset)?;
        let trim_to = lowest.min(head.low + TRIM_CHUNK);
        let mut batch = self.durable_batch();
        batch.insert(
            &self.inner.meta,
            keys::commit(topic, partition, group),
            next_offset.to_be_bytes(),
        );
        if trim_to > head.low {
            for offset in head.low..trim_to {
                batch.remove(&self.inner.records, keys::record(topic, partition, offset));
            }
            let value = keys::head_value(trim_to, head.next);
            batch.insert(&self.inner.meta, keys::head(topic, partition), value);
        }
        batch.commit()?;
        if trim_to > head.low
            && let Some(parts) = heads.get_mut(topic)
        {
            parts[partition as usize].low = trim_to;
        }
        Ok(())
    }

    /// The lag of `group` in each partition of `owned` (with the member's
    /// next offset to read, counted where the group never committed), sorted.
    pub(super) fn lag_blocking(
        &self,
        group: &str,
        owned: &[((String, i32), i64)],
    ) -> Result<Vec<PartitionLag>, LogError> {
        let mut lags = Vec::with_capacity(owned.len());
        for ((topic, partition), position) in owned {
            let (_, end) = self.watermarks(topic, *partition)?;
            let done = self.committed_blocking(group, topic, *partition)?;
            lags.push(PartitionLag::new(
                topic,
                *partition,
                end,
                done.unwrap_or(*position),
            ));
        }
        lags.sort();
        Ok(lags)
    }

    /// The lowest committed offset of all groups on the partition, counting
    /// `group` at `offset`.
    fn lowest_commit(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        offset: i64,
    ) -> Result<i64, LogError> {
        let prefix = keys::commits_prefix(topic, partition);
        let mut lowest = offset;
        for guard in self.inner.meta.prefix(&prefix) {
            let (k, v) = guard.into_inner()?;
            if &k[prefix.len()..] != group.as_bytes() {
                lowest = lowest.min(keys::decode_i64(&v)?);
            }
        }
        Ok(lowest)
    }
}
