//! The fate index: records that already have a durable fate but sit above
//! their partition's committed offset (docs/fate-index.md).
//!
//! After a record's fate is durable, the sender appends a small entry
//! `<source topic> <partition> <offset>` to the pool's fate topic, in the
//! partition with the source partition's number. When a node is assigned a
//! source partition it reads that fate partition from a bounded position —
//! the fate group's committed offset for the source topic — and skips every
//! record the entries name. The fate position is committed after the source
//! offset: to the lowest entry still above the source's committed offset.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use sluice_log::{Commit, Log, LogError, MessageLog, NewRecord, ReadLimit, partition_for};

use crate::dispatch::RecordRef;

/// How long a load waits for more entries before taking the partition's end
/// as reached.
const LOAD_WAIT: Duration = Duration::from_millis(200);

/// Fate partitions read at once when partitions are assigned. Each read of
/// an empty partition waits [`LOAD_WAIT`] for its end, so one at a time made
/// a fresh node on 48 partitions wait about 10 s before its first delivery.
const LOAD_CONCURRENCY: usize = 16;

/// The index of every source partition this node owns.
pub struct FateIndex {
    log: Log,
    /// The pool's fate topic.
    topic: String,
    /// The sender's consumer group; `<group>.fates.<source topic>` commits the
    /// read position of each source topic in the fate topic.
    group: String,
    /// For each fate partition, a key that lands in it.
    keys: Vec<Vec<u8>>,
    parts: Mutex<HashMap<(String, i32), Part>>,
}

/// The index of one source partition.
#[derive(Debug, Default)]
struct Part {
    /// Source offsets with a durable fate, above the committed offset.
    settled: BTreeSet<i64>,
    /// Fate offset → source offset of the entries still above the committed offset.
    entries: BTreeMap<i64, i64>,
    /// One past the highest fate offset seen in the fate partition.
    end: i64,
    /// The fate position last committed.
    committed: Option<i64>,
    /// Entries being appended: the position may not move past them unseen.
    appending: usize,
}

impl FateIndex {
    /// Creates the fate topic (as many partitions as the largest source
    /// topic) and registers a fate group per source topic, so that retention
    /// keeps the entries the group has not passed.
    pub async fn open(
        log: Log,
        topic: String,
        group: String,
        sources: &[String],
    ) -> Result<Self, LogError> {
        let mut count = 1;
        for source in sources {
            count = count.max(log.partitions(source).await?);
        }
        match log.create_topic(&topic, count).await {
            // Not visible yet: waited for below.
            Ok(()) | Err(LogError::PartitionMismatch { .. } | LogError::TopicNotFound { .. }) => {}
            Err(err) => return Err(err),
        }
        let count = visible_partitions(&log, &topic).await?;
        for source in sources {
            let fates_group = fate_group(&group, source);
            let deadline = tokio::time::Instant::now() + VISIBLE_WITHIN;
            loop {
                match log.join(&fates_group, &topic).await {
                    Err(LogError::TopicNotFound { .. })
                        if tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                    other => break other?,
                }
            }
        }
        Ok(Self {
            log,
            topic,
            group,
            keys: (0..count).map(|p| key_for(p, count)).collect(),
            parts: Mutex::new(HashMap::new()),
        })
    }

    /// The record's fate is durable: appends its entry (retrying until it
    /// succeeds) and returns once the entry is durable.
    pub async fn settle(&self, rec: &RecordRef) {
        let Some(entry) = self.entry(rec) else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        let at = loop {
            match self
                .log
                .append(&entry.topic, &entry.key, &entry.payload)
                .await
            {
                Ok(at) => break at,
                Err(err) => {
                    tracing::warn!(topic = %self.topic, error = %err, "appending a fate entry failed; retrying in {backoff:?} (the record's offset stays uncommitted until it succeeds)");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.appended(rec, at.offset);
    }

    /// The entry of `rec`, to append (alone, or in one atomic batch with the
    /// fate on the embedded log); `None` when its partition has no fate
    /// partition. [`FateIndex::appended`] must follow once it is durable.
    pub fn entry(&self, rec: &RecordRef) -> Option<NewRecord> {
        let key = self.keys.get(rec.partition as usize)?;
        self.with_part(rec, |part| part.appending += 1);
        Some(NewRecord {
            topic: self.topic.clone(),
            key: key.clone(),
            payload: format!("{} {} {}", rec.topic, rec.partition, rec.offset).into_bytes(),
            headers: Vec::new(),
        })
    }

    /// The entry of `rec` is durable at `offset` of its fate partition.
    pub fn appended(&self, rec: &RecordRef, offset: i64) {
        self.with_part(rec, |part| {
            part.appending = part.appending.saturating_sub(1);
            part.entries.insert(offset, rec.offset);
            part.end = part.end.max(offset + 1);
        });
    }

    fn with_part(&self, rec: &RecordRef, f: impl FnOnce(&mut Part)) {
        let mut parts = self.parts.lock().expect("fate index lock");
        f(parts.entry(source_key(rec)).or_default());
    }

    /// Whether the record already has a durable fate (it must not be
    /// delivered or re-queued again).
    pub fn is_settled(&self, rec: &RecordRef) -> bool {
        let parts = self.parts.lock().expect("fate index lock");
        parts
            .get(&source_key(rec))
            .is_some_and(|p| p.settled.contains(&rec.offset))
    }

    /// Reads the entries of newly assigned source partitions: each fate
    /// partition once, from the lowest committed position of the fate groups
    /// of its sources to its end. Entries below a source partition's
    /// committed offset are left out.
    pub async fn load(&self, assigned: &[(String, i32)]) {
        let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for (topic, partition) in assigned {
            if (*partition as usize) < self.keys.len() {
                by_partition
                    .entry(*partition)
                    .or_default()
                    .push(topic.clone());
            }
        }
        if by_partition.is_empty() {
            return;
        }
        let reads: Vec<_> = by_partition
            .into_iter()
            .map(|(partition, topics)| self.load_one(partition, topics))
            .collect();
        let started = std::time::Instant::now();
        let (mut loaded_partitions, mut settled) = (0, 0);
        let mut reads = futures::stream::iter(reads).buffer_unordered(LOAD_CONCURRENCY);
        while let Some((partition, topics, read)) = reads.next().await {
            match read {
                Ok(loaded) => {
                    loaded_partitions += 1;
                    settled += self.merge(partition, loaded);
                }
                Err(err) => {
                    tracing::warn!(partition, ?topics, %err, "reading the fate index failed; records of these partitions above their committed offsets may be delivered again")
                }
            }
        }
        tracing::info!(
            partitions = loaded_partitions,
            settled,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fate index loaded; records it names are skipped"
        );
    }

    async fn load_one(
        &self,
        partition: i32,
        topics: Vec<String>,
    ) -> (i32, Vec<String>, Result<Vec<(String, Part, i64)>, LogError>) {
        let read = self.read_partition(partition, &topics).await;
        (partition, topics, read)
    }

    /// The index of each of `topics`' partition `partition`, read from the
    /// fate partition of the same number.
    async fn read_partition(
        &self,
        partition: i32,
        topics: &[String],
    ) -> Result<Vec<(String, Part, i64)>, LogError> {
        let mut loaded = Vec::new();
        for topic in topics {
            let floor = self.log.committed(&self.group, topic, partition).await?;
            let fate_group = fate_group(&self.group, topic);
            let start = self
                .log
                .committed(&fate_group, &self.topic, partition)
                .await?;
            let part = Part {
                committed: start,
                end: start.unwrap_or(0),
                ..Part::default()
            };
            loaded.push((topic.clone(), part, floor.unwrap_or(0)));
        }
        let limit = ReadLimit {
            max_records: 5000,
            max_bytes: 4 * 1024 * 1024,
        };
        let mut next = loaded.iter().map(|(_, p, _)| p.end).min().unwrap_or(0);
        loop {
            let batch = self
                .log
                .read(&self.topic, partition, next, limit, LOAD_WAIT)
                .await?;
            let Some(last) = batch.last() else {
                return Ok(loaded);
            };
            next = last.offset + 1;
            for record in &batch {
                let Some((topic, source, offset)) = parse_entry(&record.payload) else {
                    continue;
                };
                let found = loaded.iter_mut().find(|(t, _, _)| *t == topic);
                if let Some((_, part, floor)) = found
                    && source == partition
                    && offset >= *floor
                    && record.offset >= part.end
                {
                    part.settled.insert(offset);
                    part.entries.insert(record.offset, offset);
                }
            }
            for (_, part, _) in &mut loaded {
                part.end = part.end.max(next);
            }
        }
    }

    /// Installs loaded indexes, keeping what this node appended meanwhile.
    /// Returns how many settled records they hold.
    fn merge(&self, partition: i32, loaded: Vec<(String, Part, i64)>) -> usize {
        let mut parts = self.parts.lock().expect("fate index lock");
        let mut settled = 0;
        for (topic, mut part, _) in loaded {
            tracing::debug!(%topic, partition, settled = part.settled.len(), "fate index loaded");
            settled += part.settled.len();
            let slot = parts.entry((topic, partition)).or_default();
            part.appending = slot.appending;
            part.entries.append(&mut slot.entries);
            part.end = part.end.max(slot.end);
            *slot = part;
        }
        settled
    }

    /// After the source offsets in `commits` are durable: forgets entries
    /// below them and commits each fate group's position to its lowest live
    /// entry (or the end of what it has seen).
    pub async fn commit(&self, commits: &[Commit]) {
        let mut moves = Vec::new();
        {
            let mut parts = self.parts.lock().expect("fate index lock");
            for c in commits {
                let Some(part) = parts.get_mut(&(c.topic.clone(), c.partition)) else {
                    continue;
                };
                part.settled = part.settled.split_off(&c.next_offset);
                part.entries.retain(|_, o| *o >= c.next_offset);
                if part.appending > 0 {
                    continue;
                }
                let position = part.entries.keys().next().copied().unwrap_or(part.end);
                if part.committed.is_none_or(|p| p < position) {
                    part.committed = Some(position);
                    moves.push((c.topic.clone(), c.partition, position));
                }
            }
        }
        for (topic, partition, position) in moves {
            let group = fate_group(&self.group, &topic);
            if let Err(err) = self
                .log
                .commit(&group, &self.topic, partition, position)
                .await
            {
                tracing::warn!(%err, %topic, partition, "committing the fate index position failed; the next commit covers it");
            }
        }
    }

    /// Forgets a partition this node no longer owns.
    pub fn revoke(&self, topic: &str, partition: i32) {
        let mut parts = self.parts.lock().expect("fate index lock");
        parts.remove(&(topic.to_owned(), partition));
    }
}

fn source_key(rec: &RecordRef) -> (String, i32) {
    (rec.topic.clone(), rec.partition)
}

/// The group that commits the read position of `source`'s entries.
fn fate_group(group: &str, source: &str) -> String {
    format!("{group}.fates.{source}")
}

/// A key that [`partition_for`] maps to `partition` of `count` (both back
/// ends place a keyed record with it).
fn key_for(partition: i32, count: i32) -> Vec<u8> {
    (0_u64..)
        .map(|i| format!("fates-{partition}-{i}").into_bytes())
        .find(|k| partition_for(k, count) == partition)
        .expect("FNV-1a reaches every partition")
}

/// An entry's (source topic, partition, offset); `None` if malformed.
fn parse_entry(payload: &[u8]) -> Option<(&str, i32, i64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut fields = text.split(' ');
    let topic = fields.next()?;
    let partition = fields.next()?.parse().ok()?;
    let offset = fields.next()?.parse().ok()?;
    Some((topic, partition, offset))
}

#[cfg(test)]
#[path = "fate_index_tests.rs"]
mod tests;

/// How long a just-created topic may stay invisible to a broker's metadata
/// (several senders starting at once on a cluster that just started).
const VISIBLE_WITHIN: Duration = Duration::from_secs(60);

/// The partition count of `topic`, which this node or another one just
/// created: a broker's metadata can lag the creation, so "not found" is
/// asked again for up to [`VISIBLE_WITHIN`].
async fn visible_partitions(log: &Log, topic: &str) -> Result<i32, LogError> {
    let deadline = tokio::time::Instant::now() + VISIBLE_WITHIN;
    loop {
        match log.partitions(topic).await {
            Err(LogError::TopicNotFound { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}
