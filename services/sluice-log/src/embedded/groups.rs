//! Consumer groups: committed offsets, and retention below the lowest of them.

use std::collections::HashMap;

use super::{EmbeddedLog, keys, partition_head, topic_heads};
use crate::{LogError, PartitionLag};

/// Each group's committed offset, by partition. A partition's offsets are
/// read from the store once, then kept up to date here by every commit and
/// join (both hold the heads' lock). Reading them from the store on every
/// commit would walk every version of their keys still in the memtable,
/// which grows by one per commit until a flush: the cost of a commit grew
/// for as long as the node ran.
pub(super) type Commits = HashMap<(String, i32), HashMap<String, i64>>;

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
            let mut commits = self.commits();
            for (p, head) in parts.iter().enumerate() {
                if let Some(known) = commits.get_mut(&(topic.to_owned(), p as i32)) {
                    known.entry(group.to_owned()).or_insert(head.low);
                }
            }
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
        if let Some(known) = self.commits().get_mut(&(topic.to_owned(), partition)) {
            known.insert(group.to_owned(), next_offset);
        }
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
        let mut commits = self.commits();
        let key = (topic.to_owned(), partition);
        if !commits.contains_key(&key) {
            let read = self.read_commits(topic, partition)?;
            commits.insert(key.clone(), read);
        }
        let others = commits[&key].iter().filter(|(g, _)| *g != group);
        Ok(others.map(|(_, o)| *o).fold(offset, i64::min))
    }

    /// Every group's committed offset in the partition, from the store.
    fn read_commits(&self, topic: &str, partition: i32) -> Result<HashMap<String, i64>, LogError> {
        let prefix = keys::commits_prefix(topic, partition);
        let mut read = HashMap::new();
        for guard in self.inner.meta.prefix(&prefix) {
            let (k, v) = guard.into_inner()?;
            let group = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            read.insert(group, keys::decode_i64(&v)?);
        }
        Ok(read)
    }

    fn commits(&self) -> std::sync::MutexGuard<'_, Commits> {
        // Entries change only after their batch committed.
        self.inner.commits.lock().unwrap_or_else(|e| e.into_inner())
    }
}
