//! The embedded ledger: the recorder's tables in one fjall keyspace in a
//! data directory, for `sluice dev` and single-machine installs. Layout,
//! durability and TTL handling: docs/recorder.md, "Embedded ledger".
//!
//! Every write (including the read-then-write of claims and counters) runs
//! under one mutex and commits a fjall batch; the journal is then fsync'd
//! (`PersistMode::SyncAll`) before the call returns, after the mutex is
//! released so concurrent callers share fsyncs. Blocking work runs on
//! tokio's blocking pool. Reads live in `ledger_embedded_read.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use prost::Message;
use sluice_proto::v1::Event;

use crate::RecorderError;
use crate::ledger::Res;
use crate::ledger::{Claim, decide_claim};
use crate::ledger_keys::{self as keys, Key, Reader};
use crate::record::{self, CounterKey, Granularity, Part, Position};

/// The ledger's memtable (fjall's default is 64 MiB): a quarter of it, as
/// its rows are small and a parked backlog's heap was mostly memtables
/// (docs/benchmarks.md, "Memory of a parked backlog"). Set when the
/// keyspace is created.
const ROWS_MEMTABLE: u64 = 16 << 20;

/// One-byte prefixes of the tables inside the `recorder` keyspace.
pub(crate) mod table {
    pub const EVENTS: u8 = b'e';
    pub const CAMPAIGNS: u8 = b'c';
    pub const SUPPRESSIONS: u8 = b's';
    /// Claims written before they held the record's position (read only).
    pub const DEDUP: u8 = b'd';
    pub const CLAIMS: u8 = b'C';
    pub const DAILY_PARTS: u8 = b'P';
    pub const HOURLY_PARTS: u8 = b'Q';
    pub const DAILY: u8 = b'D';
    pub const HOURLY: u8 = b'H';
    pub const PATHS: u8 = b'p';
    pub const TENANTS: u8 = b't';
    pub const EXPIRY: u8 = b'x';
    pub const KEYS: u8 = b'k';
    pub const INGEST_NODES: u8 = b'n';
    pub const WEBHOOK_ATTEMPTS: u8 = b'w';
}

/// Least time between two lazy purges of expired rows.
const PURGE_EVERY_MS: i64 = 60_000;
/// Most expired rows removed by one purge (the next one continues).
const PURGE_BATCH: usize = 10_000;

/// The recorder's ledger in a data directory. Cheap to clone; clones share
/// the database. One process at a time may open a directory.
#[derive(Clone)]
pub struct EmbeddedLedger {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    dir: PathBuf,
    db: Database,
    pub(crate) rows: Keyspace,
    pub(crate) status_ttl_ms: i64,
    dedup_ttl_ms: i64,
    /// Held for every write, so check-then-write is atomic.
    write: Mutex<()>,
    last_purge_ms: AtomicI64,
    /// Write batches committed so far (numbered from 1, under `write`).
    written: AtomicU64,
    /// The highest batch number a finished fsync covered. Held while
    /// syncing, so concurrent writers share one fsync (group commit).
    synced: Mutex<u64>,
}

impl std::fmt::Debug for EmbeddedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLedger")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// Key of the suppression row of `(tenant, address)`.
pub(crate) fn suppression_key(tenant: &str, address: &str) -> Key {
    Key::new()
        .raw(&[table::SUPPRESSIONS])
        .s(tenant)
        .raw(address.as_bytes())
}

/// Wall-clock Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn fjall_err(context: &str) -> impl Fn(fjall::Error) -> RecorderError + '_ {
    move |e| RecorderError::embedded(context, e)
}

impl EmbeddedLedger {
    /// Opens (or creates) the ledger in `dir`, keeping history `status_ttl_days`
    /// and de-duplication claims `dedup_ttl_days`, and recovers whatever the
    /// last process made durable.
    pub fn open(dir: &Path, status_ttl_days: u32, dedup_ttl_days: u32) -> Res<Self> {
        let day = |d: u32| Duration::from_secs(u64::from(d) * 86_400);
        Self::open_with_ttls(dir, day(status_ttl_days), day(dedup_ttl_days))
    }

    /// [`EmbeddedLedger::open`] with TTLs of any length (tests use milliseconds).
    pub fn open_with_ttls(dir: &Path, status_ttl: Duration, dedup_ttl: Duration) -> Res<Self> {
        let context = format!(
            "opening data directory {} (one process at a time may open it: stop the other \
             recorder or choose another data_dir)",
            dir.display()
        );
        let db = Database::builder(dir).open().map_err(fjall_err(&context))?;
        let rows = db
            .keyspace("recorder", || {
                KeyspaceCreateOptions::default().max_memtable_size(ROWS_MEMTABLE)
            })
            .map_err(fjall_err(&context))?;
        let ledger = Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                db,
                rows,
                status_ttl_ms: millis(status_ttl),
                dedup_ttl_ms: millis(dedup_ttl),
                write: Mutex::new(()),
                last_purge_ms: AtomicI64::new(now_ms()),
                written: AtomicU64::new(0),
                synced: Mutex::new(0),
            }),
        };
        ledger.purge_expired()?;
        tracing::debug!(dir = %dir.display(), "embedded ledger opened");
        Ok(ledger)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs `f` on tokio's blocking pool (an fsync must not stall a worker).
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Res<T>
    where
        T: Send + 'static,
        F: FnOnce(&EmbeddedLedger) -> Res<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| RecorderError::embedded("running a blocking write", e))?
    }

    /// Under the write mutex: `plan` reads what it needs and returns a result
    /// and the rows to put; they are committed as one batch. Then the journal
    /// is fsync'd, outside the mutex, before returning.
    pub(crate) fn write<T>(
        &self,
        plan: impl FnOnce(&Keyspace) -> Res<(T, Vec<(Key, Vec<u8>)>)>,
    ) -> Res<T> {
        let result = {
            let _guard = self.inner.write.lock().unwrap_or_else(|e| e.into_inner());
            let (result, rows) = plan(&self.inner.rows)?;
            let mut batch = self.inner.db.batch();
            for (key, value) in rows {
                batch.insert(&self.inner.rows, key.0, value);
            }
            batch.commit().map_err(fjall_err("writing a batch"))?;
            (
                result,
                self.inner.written.fetch_add(1, Ordering::SeqCst) + 1,
            )
        };
        self.sync_through(result.1)?;
        self.maybe_purge();
        Ok(result.0)
    }

    /// Removes the row at `key` under the write mutex, durable when it
    /// returns; false (nothing written) when there was none.
    pub(crate) fn remove(&self, key: &Key) -> Res<bool> {
        let seq = {
            let _guard = self.inner.write.lock().unwrap_or_else(|e| e.into_inner());
            let rows = &self.inner.rows;
            if rows
                .get(&key.0)
                .map_err(fjall_err("reading a row"))?
                .is_none()
            {
                return Ok(false);
            }
            let mut batch = self.inner.db.batch();
            batch.remove(rows, key.0.clone());
            batch.commit().map_err(fjall_err("removing a row"))?;
            self.inner.written.fetch_add(1, Ordering::SeqCst) + 1
        };
        self.sync_through(seq)?;
        Ok(true)
    }

    /// Returns once write batch `seq` is fsync'd. A writer that finds a
    /// later fsync already covered its batch returns at once; otherwise it
    /// syncs everything committed so far, for itself and the writers behind it.
    fn sync_through(&self, seq: u64) -> Res<()> {
        let mut synced = self.inner.synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= seq {
            return Ok(());
        }
        // Every batch numbered up to here committed before this read.
        let target = self.inner.written.load(Ordering::SeqCst);
        self.inner
            .db
            .persist(PersistMode::SyncAll)
            .map_err(fjall_err("syncing the journal"))?;
        *synced = target;
        Ok(())
    }

    /// Removes rows whose TTL has passed (at most `PURGE_BATCH` per call)
    /// and returns how many. Reads never return expired rows either way.
    pub fn purge_expired(&self) -> Res<usize> {
        let now = now_ms();
        self.inner.last_purge_ms.store(now, Ordering::Relaxed);
        let _guard = self.inner.write.lock().unwrap_or_else(|e| e.into_inner());
        let rows = &self.inner.rows;
        let end = Key::new().raw(&[table::EXPIRY]).i(now.saturating_add(1)).0;
        let mut batch = self.inner.db.batch();
        let mut purged = 0;
        for guard in rows.range(vec![table::EXPIRY]..end).take(PURGE_BATCH) {
            let (index, _) = guard.into_inner().map_err(fjall_err("scanning expiries"))?;
            let row = index.get(9..).unwrap_or_default();
            // A rewrite may have extended the row's life: check its own expiry.
            if let Some(value) = rows.get(row).map_err(fjall_err("reading a row"))?
                && keys::live(&value, now)?.is_none()
            {
                batch.remove(rows, row.to_vec());
                purged += 1;
            }
            batch.remove(rows, index.to_vec());
        }
        batch.commit().map_err(fjall_err("purging expired rows"))?;
        Ok(purged)
    }

    fn maybe_purge(&self) {
        let last = self.inner.last_purge_ms.load(Ordering::Relaxed);
        if now_ms() - last >= PURGE_EVERY_MS
            && let Err(err) = self.purge_expired()
        {
            tracing::warn!(error = %err, "purging expired rows failed; retrying later");
        }
    }

    /// An expiring row plus its entry in the expiry index.
    pub(crate) fn expiring(row: Key, expires_ms: i64, payload: &[u8]) -> [(Key, Vec<u8>); 2] {
        let index = Key::new().raw(&[table::EXPIRY]).i(expires_ms).raw(&row.0);
        [
            (row, keys::expiring(expires_ms, payload)),
            (index, Vec::new()),
        ]
    }

    /// The idempotent rows of every event, as one durable write.
    pub(crate) fn write_rows_blocking(&self, events: &[Event], now_secs: i64) -> Res<()> {
        let expires = now_ms().saturating_add(self.inner.status_ttl_ms);
        let mut rows = Vec::with_capacity(events.len() * 5);
        for event in events {
            event_rows(event, now_secs, expires, &mut rows);
        }
        self.write(|_| Ok(((), rows)))
    }

    /// Every claim of a batch, decided and written as one durable write.
    pub(crate) fn claim_blocking(&self, claims: &[(Event, Position)]) -> Res<Vec<Claim>> {
        let now = now_ms();
        let expires = now.saturating_add(self.inner.dedup_ttl_ms);
        self.write(|rows| {
            let mut decided = Vec::with_capacity(claims.len());
            let mut writes = Vec::new();
            for (event, at) in claims {
                let key = claim_key(table::CLAIMS, event);
                let stored = match rows.get(&key.0).map_err(fjall_err("reading a claim"))? {
                    Some(value) => keys::live(&value, now)?
                        .map(keys::decode_holder)
                        .transpose()?,
                    None => None,
                };
                let stored = match stored {
                    Some(holder) => Some(holder),
                    None => legacy_claim(rows, event, now)?,
                };
                let claim = decide_claim(stored.as_ref(), event, *at);
                if claim == Claim::New && stored.is_none() {
                    let holder = keys::encode_holder(&event.event_id, *at);
                    writes.extend(Self::expiring(key, expires, &holder));
                }
                decided.push(claim);
            }
            Ok((decided, writes))
        })
    }

    /// The stored part of each (counter row, events partition).
    pub(crate) fn parts_blocking(&self, keys: &[(CounterKey, i32)]) -> Res<Vec<Part>> {
        let rows = &self.inner.rows;
        keys.iter()
            .map(|(key, partition)| {
                let row = part_key(key, *partition);
                match rows
                    .get(&row.0)
                    .map_err(fjall_err("reading a counter part"))?
                {
                    Some(bytes) => keys::decode_part(&bytes),
                    None => Ok(Part::default()),
                }
            })
            .collect()
    }

    /// Stores every part further along than the stored one, as one durable
    /// write.
    pub(crate) fn put_parts_blocking(&self, parts: &[(CounterKey, i32, Part)]) -> Res<()> {
        self.write(|rows| {
            let mut writes = Vec::with_capacity(parts.len());
            for (key, partition, part) in parts {
                let row = part_key(key, *partition);
                let stored = rows
                    .get(&row.0)
                    .map_err(fjall_err("reading a counter part"))?;
                let stored = stored.map(|b| keys::decode_part(&b)).transpose()?;
                if stored.is_none_or(|s| s.through < part.through) {
                    writes.push((row, keys::encode_part(part)));
                }
            }
            Ok(((), writes))
        })
    }

    /// Upserts one row (reputation).
    pub(crate) fn put_blocking(&self, key: Key, value: Vec<u8>) -> Res<()> {
        self.write(|_| Ok(((), vec![(key, value)])))
    }
}

/// The history, campaign and suppression rows of one event.
fn event_rows(event: &Event, now_secs: i64, expires: i64, rows: &mut Vec<(Key, Vec<u8>)>) {
    let at = record::event_millis(event, now_secs);
    let bytes = event.encode_to_vec();
    let id = event.event_id.as_bytes();
    let history = Key::new().raw(&[table::EVENTS]).s(&event.message_id);
    rows.extend(EmbeddedLedger::expiring(
        history.i(at).raw(id),
        expires,
        &bytes,
    ));
    if !event.campaign.is_empty() {
        let hour = crate::time::hour_of(record::event_secs(event, now_secs));
        let campaign = Key::new().raw(&[table::CAMPAIGNS]).s(&event.campaign);
        let row = campaign.s(&hour).i(at).raw(id);
        rows.extend(EmbeddedLedger::expiring(row, expires, &bytes));
    }
    if let Some((tenant, address, reason)) = record::suppression(event) {
        let key = suppression_key(tenant, &address);
        let value = Key::new().s(reason).i(at).raw(event.message_id.as_bytes());
        rows.push((key, value.0));
    }
}

/// The row of an event's de-duplication claim in `t`.
fn claim_key(t: u8, event: &Event) -> Key {
    let (message_id, attempt, kind) = record::dedup_key(event);
    Key::new()
        .raw(&[t])
        .s(&message_id)
        .i(i64::from(attempt))
        .i(i64::from(kind))
}

/// A live claim written before claims held positions: its event id, with no
/// position (so never this record's).
fn legacy_claim(
    rows: &Keyspace,
    event: &Event,
    now: i64,
) -> Res<Option<(String, Option<Position>)>> {
    let key = claim_key(table::DEDUP, event);
    let Some(value) = rows.get(&key.0).map_err(fjall_err("reading a claim"))? else {
        return Ok(None);
    };
    Ok(keys::live(&value, now)?.map(|id| (String::from_utf8_lossy(id).into_owned(), None)))
}

/// The prefix of the counter parts of one partition `(scope, key, day)`.
pub(crate) fn parts_partition(granularity: Granularity, scope: &str, key: &str, day: &str) -> Key {
    let t = match granularity {
        Granularity::Daily => table::DAILY_PARTS,
        Granularity::Hourly => table::HOURLY_PARTS,
    };
    Key::new().raw(&[t]).s(scope).s(key).s(day)
}

/// The row of one counter part: the counter row's key, then the partition.
fn part_key(key: &CounterKey, partition: i32) -> Key {
    let row = parts_partition(key.granularity, key.scope, &key.key, &key.day);
    let row = match key.granularity {
        Granularity::Daily => row,
        Granularity::Hourly => row.s(&key.hour),
    };
    row.s(&key.detail).i(i64::from(partition))
}

/// The prefix of one counter partition `(scope, key, day)`.
pub(crate) fn counter_partition(
    granularity: Granularity,
    scope: &str,
    key: &str,
    day: &str,
) -> Key {
    let t = match granularity {
        Granularity::Daily => table::DAILY,
        Granularity::Hourly => table::HOURLY,
    };
    Key::new().raw(&[t]).s(scope).s(key).s(day)
}

/// Decodes the reputation row stored at a key.
pub(crate) fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> Res<M> {
    M::decode(bytes).map_err(|e| RecorderError::Corrupt(format!("embedded ledger {what}: {e}")))
}

/// A reader over a key without its one-byte table prefix.
pub(crate) fn after_table(key: &[u8]) -> Reader<'_> {
    Reader(key.get(1..).unwrap_or_default())
}
