//! The embedded back end: the log in a data directory, on fjall.
//!
//! All writes (appends, topic creation, commits) are fjall write batches
//! committed with `PersistMode::SyncAll`: atomic, and fsync'd before the call
//! returns. Writers are serialized by one mutex that also guards the
//! in-memory copy of every partition's head (earliest retained offset, next
//! offset), so offsets are assigned densely and become visible in order.

mod asynchronous;
mod consumer;
mod group_commit;
mod groups;
mod keys;

pub use consumer::EmbeddedConsumer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

/// The records' memtable (fjall's default is 64 MiB). With the memtables
/// waiting to be flushed it was the largest share of `sluice dev`'s heap
/// under a parked backlog (docs/benchmarks.md, "Memory of a parked
/// backlog"). Set when the keyspace is created: an existing data directory
/// keeps its size.
const RECORDS_MEMTABLE: u64 = 32 << 20;
use tokio::sync::Notify;

use crate::{LogError, NewRecord, Position, ReadLimit, Record, partition_for};

/// Earliest retained offset and next offset to assign, of one partition.
#[derive(Debug, Clone, Copy)]
struct Head {
    low: i64,
    next: i64,
}

/// The message log in a data directory. Cheap to clone; clones share the
/// store. One process at a time may open a directory.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db: Database,
    records: Keyspace,
    meta: Keyspace,
    /// Topic → head of each partition. Held for the whole of every write.
    heads: Mutex<HashMap<String, Vec<Head>>>,
    /// Woken after every append, for readers waiting for records.
    appended: Notify,
    /// Groups with a live member ([`EmbeddedConsumer`]).
    members: Mutex<HashSet<String>>,
    /// Appends waiting to share one durable batch.
    queue: Mutex<group_commit::Queue>,
    /// Committed offsets, kept here once read ([`groups::Commits`]).
    commits: Mutex<groups::Commits>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir`, recovering whatever the last
    /// process made durable.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_path_buf();
        let open_err = |source| LogError::Open {
            dir: dir.clone(),
            source,
        };
        let db = Database::builder(&dir).open().map_err(open_err)?;
        let records = db
            .keyspace("records", || {
                KeyspaceCreateOptions::default().max_memtable_size(RECORDS_MEMTABLE)
            })
            .map_err(open_err)?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(open_err)?;
        let heads = load_heads(&meta)?;
        tracing::debug!(dir = %dir.display(), topics = heads.len(), "message log opened");
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                db,
                records,
                meta,
                heads: Mutex::new(heads),
                appended: Notify::new(),
                members: Mutex::default(),
                queue: Mutex::default(),
                commits: Mutex::default(),
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Head>>> {
        // A panic while holding the lock cannot leave a half-applied head:
        // heads change only after their batch committed.
        self.inner.heads.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn durable_batch(&self) -> fjall::OwnedWriteBatch {
        self.inner.db.batch().durability(Some(PersistMode::SyncAll))
    }

    /// Blocking form of [`crate::MessageLog::create_topic`].
    pub fn create_topic_blocking(&self, topic: &str, partitions: i32) -> Result<(), LogError> {
        crate::check_topic(topic)?;
        if partitions < 1 {
            return Err(LogError::BadPartitionCount {
                topic: topic.to_owned(),
                partitions,
            });
        }
        let mut heads = self.lock();
        if let Some(existing) = heads.get(topic) {
            let existing = existing.len() as i32;
            if existing == partitions {
                return Ok(());
            }
            return Err(LogError::PartitionMismatch {
                topic: topic.to_owned(),
                existing,
                requested: partitions,
            });
        }
        let mut batch = self.durable_batch();
        batch.insert(
            &self.inner.meta,
            keys::topic(topic),
            (partitions as u32).to_be_bytes(),
        );
        for p in 0..partitions {
            batch.insert(
                &self.inner.meta,
                keys::head(topic, p),
                keys::head_value(0, 0),
            );
        }
        batch.commit()?;
        let fresh = Head { low: 0, next: 0 };
        heads.insert(topic.to_owned(), vec![fresh; partitions as usize]);
        Ok(())
    }

    /// The partition count of `topic`.
    pub fn partitions_blocking(&self, topic: &str) -> Result<i32, LogError> {
        let heads = self.lock();
        Ok(topic_heads(&heads, topic)?.len() as i32)
    }

    /// (earliest retained offset, next offset to assign) of a partition.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), LogError> {
        let heads = self.lock();
        let head = partition_head(&heads, topic, partition)?;
        Ok((head.low, head.next))
    }

    /// Blocking form of [`crate::MessageLog::append_batch`].
    pub fn append_batch_blocking(&self, records: &[NewRecord]) -> Result<Vec<Position>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        for r in records {
            r.check()?;
        }
        let mut heads = self.lock();
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        let mut positions = Vec::with_capacity(records.len());
        let mut batch = self.durable_batch();
        for r in records {
            let parts = topic_heads(&heads, &r.topic)?;
            let partition = partition_for(&r.key, parts.len() as i32);
            let slot = next
                .entry((r.topic.as_str(), partition))
                .or_insert(parts[partition as usize].next);
            let offset = *slot;
            *slot += 1;
            let key = keys::record(&r.topic, partition, offset);
            batch.insert(
                &self.inner.records,
                key,
                keys::record_value(&r.key, &r.payload, &r.headers),
            );
            positions.push(Position { partition, offset });
        }
        for (&(topic, partition), &n) in &next {
            let low = heads[topic][partition as usize].low;
            batch.insert(
                &self.inner.meta,
                keys::head(topic, partition),
                keys::head_value(low, n),
            );
        }
        batch.commit()?;
        for ((topic, partition), n) in next {
            if let Some(parts) = heads.get_mut(topic) {
                parts[partition as usize].next = n;
            }
        }
        drop(heads);
        self.inner.appended.notify_waiters();
        Ok(positions)
    }

    /// Blocking form of [`crate::MessageLog::append`].
    pub fn append_blocking(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> Result<Position, LogError> {
        let record = NewRecord::new(topic, key, payload);
        let positions = self.append_batch_blocking(std::slice::from_ref(&record))?;
        Ok(positions[0])
    }

    /// Blocking form of [`crate::MessageLog::read`], without waiting.
    pub fn read_blocking(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        limit: ReadLimit,
    ) -> Result<Vec<Record>, LogError> {
        let (low, next) = self.watermarks(topic, partition)?;
        let start = from.max(low);
        if start >= next {
            return Ok(Vec::new());
        }
        let range = keys::record(topic, partition, start)..keys::record(topic, partition, next);
        let mut out = Vec::new();
        let mut bytes = 0;
        for guard in self.inner.records.range(range) {
            if out.len() >= limit.max_records || (!out.is_empty() && bytes >= limit.max_bytes) {
                break;
            }
            let (k, v) = guard.into_inner()?;
            let offset = keys::decode_i64(&k[k.len().saturating_sub(8)..])?;
            let stored = keys::decode_record(&v)?;
            bytes += crate::log::record_size(&stored.key, &stored.payload, &stored.headers);
            out.push(Record {
                partition,
                offset,
                key: stored.key,
                payload: stored.payload,
                headers: stored.headers,
            });
        }
        Ok(out)
    }
}

fn topic_heads<'a>(
    heads: &'a HashMap<String, Vec<Head>>,
    topic: &str,
) -> Result<&'a [Head], LogError> {
    heads
        .get(topic)
        .map(Vec::as_slice)
        .ok_or_else(|| LogError::TopicNotFound {
            topic: topic.to_owned(),
        })
}

fn partition_head(
    heads: &HashMap<String, Vec<Head>>,
    topic: &str,
    partition: i32,
) -> Result<Head, LogError> {
    let parts = topic_heads(heads, topic)?;
    usize::try_from(partition)
        .ok()
        .and_then(|p| parts.get(p).copied())
        .ok_or_else(|| LogError::PartitionNotFound {
            topic: topic.to_owned(),
            partition,
            partitions: parts.len() as i32,
        })
}

/// Reads the topic catalogue and every partition's head.
fn load_heads(meta: &Keyspace) -> Result<HashMap<String, Vec<Head>>, LogError> {
    let mut heads = HashMap::new();
    for guard in meta.prefix(keys::topics_prefix()) {
        let (k, v) = guard.into_inner()?;
        let topic = keys::topic_name(&k)?;
        let count: [u8; 4] = v.as_ref().try_into().map_err(|_| LogError::Corrupt {
            what: format!("partition count of topic `{topic}`"),
        })?;
        let mut parts = Vec::new();
        for p in 0..u32::from_be_bytes(count) as i32 {
            let value = meta
                .get(keys::head(&topic, p))?
                .ok_or_else(|| LogError::Corrupt {
                    what: format!("head of {topic}/{p} is missing"),
                })?;
            let (low, next) = keys::decode_head(&value)?;
            parts.push(Head { low, next });
        }
        heads.insert(topic, parts);
    }
    Ok(heads)
}
