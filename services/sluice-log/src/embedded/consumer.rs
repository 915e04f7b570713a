//! [`GroupConsumer`] for [`EmbeddedLog`]: the group's only member reads every
//! partition of its topics, round robin, from the group's committed offsets.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use super::EmbeddedLog;
use crate::group::push_rebalance;
use crate::{
    Commit, Delivery, GroupConsumer, LogError, MessageLog, PartitionLag, ReadLimit, Rebalance,
};

/// Soft cap on the bytes one poll returns.
const POLL_BYTES: usize = 32 * 1024 * 1024;

/// The member of one consumer group on an [`EmbeddedLog`]. Dropping it (or
/// [`GroupConsumer::leave`]) leaves the group, so another member may join.
/// It owns every partition of its topics: one [`Rebalance::Assigned`] with
/// all of them is pending from the start, and leaving revokes them all.
pub struct EmbeddedConsumer {
    log: EmbeddedLog,
    group: String,
    /// Every (topic, partition) of the subscription, in a fixed order.
    partitions: Vec<(String, i32)>,
    /// Next offset to read, per entry of `partitions`.
    next: Vec<i64>,
    paused: HashSet<(String, i32)>,
    /// Where the next poll starts, so no partition starves the others.
    start: usize,
    /// Rebalance events not yet taken.
    events: VecDeque<Rebalance>,
    /// True once the member left: its group slot may belong to another.
    left: bool,
}

impl std::fmt::Debug for EmbeddedConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedConsumer")
            .field("group", &self.group)
            .field("partitions", &self.partitions.len())
            .finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    pub(super) async fn subscribe_member(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<EmbeddedConsumer, LogError> {
        crate::check_group(group)?;
        let mut partitions = Vec::new();
        for topic in topics {
            self.join(group, topic).await?;
            for p in 0..self.partitions_blocking(topic)? {
                partitions.push((topic.clone(), p));
            }
        }
        let mut next = Vec::with_capacity(partitions.len());
        for (topic, p) in &partitions {
            let committed = self.committed_blocking(group, topic, *p)?;
            next.push(committed.unwrap_or(self.watermarks(topic, *p)?.0));
        }
        let fresh = self
            .inner
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group.to_owned());
        if !fresh {
            return Err(LogError::GroupBusy {
                group: group.to_owned(),
            });
        }
        let mut assigned = partitions.clone();
        assigned.sort();
        Ok(EmbeddedConsumer {
            log: self.clone(),
            group: group.to_owned(),
            partitions,
            next,
            paused: HashSet::new(),
            start: 0,
            events: VecDeque::from([Rebalance::Assigned(assigned)]),
            left: false,
        })
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        if !self.left {
            self.release();
        }
    }
}

impl EmbeddedConsumer {
    /// Gives the group's slot back.
    fn release(&self) {
        self.log
            .inner
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.group);
    }
}

impl EmbeddedConsumer {
    /// Reads what is available now from the unpaused partitions, starting
    /// after the partition the previous poll started at.
    fn read_available(&self, log: &EmbeddedLog, max: usize) -> Result<Vec<Delivery>, LogError> {
        let n = self.partitions.len();
        let max = max.max(1);
        let mut out = Vec::new();
        let mut bytes = 0;
        for i in 0..n {
            let idx = (self.start + i) % n;
            let (topic, partition) = &self.partitions[idx];
            if self.paused.contains(&(topic.clone(), *partition)) {
                continue;
            }
            let room = max - out.len();
            if room == 0 || bytes >= POLL_BYTES {
                break;
            }
            let limit = ReadLimit {
                max_records: room,
                max_bytes: POLL_BYTES - bytes,
            };
            for r in log.read_blocking(topic, *partition, self.next[idx], limit)? {
                bytes += crate::log::record_size(&r.key, &r.payload, &r.headers);
                out.push(Delivery {
                    topic: topic.clone(),
                    partition: r.partition,
                    offset: r.offset,
                    key: r.key,
                    payload: r.payload,
                    headers: r.headers,
                });
            }
        }
        Ok(out)
    }

    /// Moves every partition's read position past the records returned.
    fn advance(&mut self, records: &[Delivery]) {
        let index: HashMap<(&str, i32), usize> = self
            .partitions
            .iter()
            .enumerate()
            .map(|(i, (t, p))| ((t.as_str(), *p), i))
            .collect();
        for r in records {
            if let Some(&i) = index.get(&(r.topic.as_str(), r.partition)) {
                self.next[i] = self.next[i].max(r.offset + 1);
            }
        }
        if !self.partitions.is_empty() {
            self.start = (self.start + 1) % self.partitions.len();
        }
    }
}

impl GroupConsumer for EmbeddedConsumer {
    async fn poll_at_most(
        &mut self,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, LogError> {
        let deadline = tokio::time::Instant::now() + wait;
        let log = self.log.clone();
        loop {
            let appended = log.inner.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            // Reads are range scans of an LSM tree: short enough to run here.
            let records = self.read_available(&log, max)?;
            if !records.is_empty() {
                self.advance(&records);
                return Ok(records);
            }
            if tokio::time::Instant::now() >= deadline
                || tokio::time::timeout_at(deadline, appended).await.is_err()
            {
                return Ok(Vec::new());
            }
        }
    }

    fn pause(&mut self, topic: &str, partition: i32) {
        self.paused.insert((topic.to_owned(), partition));
    }

    fn resume(&mut self, topic: &str, partition: i32) {
        self.paused.remove(&(topic.to_owned(), partition));
    }

    fn rebalances(&mut self) -> Vec<Rebalance> {
        self.events.drain(..).collect()
    }

    fn leave(&mut self) {
        if self.left {
            return;
        }
        self.left = true;
        self.release();
        let mut revoked = std::mem::take(&mut self.partitions);
        self.next.clear();
        self.start = 0;
        revoked.sort();
        push_rebalance(&mut self.events, Rebalance::Revoked(revoked));
    }

    async fn commit(&mut self, commits: &[Commit]) -> Result<(), LogError> {
        let group = self.group.clone();
        let commits = commits.to_vec();
        self.log
            .blocking(move |log| {
                for c in &commits {
                    log.commit_blocking(&group, &c.topic, c.partition, c.next_offset)?;
                }
                Ok(())
            })
            .await
    }

    fn lag(&self) -> impl Future<Output = Result<Vec<PartitionLag>, LogError>> + Send + use<> {
        let (log, group) = (self.log.clone(), self.group.clone());
        let owned: Vec<((String, i32), i64)> = self
            .partitions
            .iter()
            .cloned()
            .zip(self.next.iter().copied())
            .collect();
        async move {
            log.blocking(move |log| log.lag_blocking(&group, &owned))
                .await
        }
    }
}
