//! The embedded back end: fjall keyspaces in a data directory.
//!
//! Layout (all keys byte strings, values protobuf):
//! - `records`: `<kind>\0<name>` → the record (`Pool`, `SourceIp`, ...);
//!   a delete removes the key.
//! - `suppressions`: `<tenant>\0<address>` → `Suppression`.
//! - `changes`: revision (u64 big-endian) → `ConfigChange`.
//! - `meta`: `revision` → the latest revision (u64 big-endian).
//!
//! Every change is one fjall write batch (record, change log entry and
//! revision together) committed with `PersistMode::SyncAll`: atomic and
//! fsync'd before the call returns. Writers are serialized by a mutex that
//! guards the revision counter, so revisions are dense and in commit order.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use prost::Message;
use sluice_proto::v1::{
    ConfigChange, Pool, Provider, SitePolicy, SourceIp, Suppression, Tenant, WarmupPlan,
    config_change::Change,
};

use super::ConfigStore;
use crate::ControlError;
use crate::record::{Kind, Record};

const REVISION_KEY: &[u8] = b"revision";

/// The configuration in a data directory. Cheap to clone; clones share the
/// store. One process at a time may open a directory.
#[derive(Clone)]
pub struct EmbeddedConfigStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db: Database,
    records: Keyspace,
    suppressions: Keyspace,
    changes: Keyspace,
    meta: Keyspace,
    /// The latest revision; held for the whole of every write.
    revision: Mutex<u64>,
}

impl std::fmt::Debug for EmbeddedConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedConfigStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

fn key(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn corrupt(what: impl std::fmt::Display) -> ControlError {
    ControlError::Corrupt(what.to_string())
}

fn decode_record(kind: Kind, bytes: &[u8]) -> Result<Record, ControlError> {
    let bad = |e: prost::DecodeError| corrupt(format!("{} record: {e}", kind.as_str()));
    Ok(match kind {
        Kind::Pool => Record::Pool(Pool::decode(bytes).map_err(bad)?),
        Kind::Ip => Record::Ip(SourceIp::decode(bytes).map_err(bad)?),
        Kind::WarmupPlan => Record::WarmupPlan(WarmupPlan::decode(bytes).map_err(bad)?),
        Kind::SitePolicy => Record::SitePolicy(SitePolicy::decode(bytes).map_err(bad)?),
        Kind::Tenant => Record::Tenant(Tenant::decode(bytes).map_err(bad)?),
        Kind::Provider => Record::Provider(Provider::decode(bytes).map_err(bad)?),
    })
}

fn encode_record(record: &Record) -> Vec<u8> {
    match record {
        Record::Pool(p) => p.encode_to_vec(),
        Record::Ip(ip) => ip.encode_to_vec(),
        Record::WarmupPlan(p) => p.encode_to_vec(),
        Record::SitePolicy(s) => s.encode_to_vec(),
        Record::Tenant(t) => t.encode_to_vec(),
        Record::Provider(p) => p.encode_to_vec(),
    }
}

/// One pending write of a change: keyspace, key, value (`None` removes).
type Write<'a> = (&'a Keyspace, Vec<u8>, Option<Vec<u8>>);

impl EmbeddedConfigStore {
    /// Opens (or creates) the store in `dir`, recovering whatever the last
    /// process made durable.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ControlError> {
        let dir = dir.as_ref().to_path_buf();
        let open_err = |source| ControlError::Open {
            dir: dir.clone(),
            source,
        };
        let db = Database::builder(&dir).open().map_err(open_err)?;
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(open_err)
        };
        let (records, suppressions) = (ks("records")?, ks("suppressions")?);
        let (changes, meta) = (ks("changes")?, ks("meta")?);
        let revision = match meta.get(REVISION_KEY)? {
            Some(v) => decode_u64(&v)?,
            None => 0,
        };
        tracing::debug!(dir = %dir.display(), revision, "control store opened");
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                db,
                records,
                suppressions,
                changes,
                meta,
                revision: Mutex::new(revision),
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        // The counter changes only after its batch committed.
        self.inner
            .revision
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Commits `writes` plus the change log entry and the new revision in
    /// one durable batch; returns the new revision.
    fn commit(&self, writes: Vec<Write<'_>>, change: Change) -> Result<u64, ControlError> {
        let revision = self.lock();
        self.commit_locked(revision, writes, change)
    }

    /// [`Self::commit`] with the revision lock already held.
    fn commit_locked(
        &self,
        mut revision: MutexGuard<'_, u64>,
        writes: Vec<Write<'_>>,
        change: Change,
    ) -> Result<u64, ControlError> {
        let next = *revision + 1;
        let mut batch = self.inner.db.batch().durability(Some(PersistMode::SyncAll));
        for (ks, k, v) in writes {
            match v {
                Some(v) => batch.insert(ks, k, v),
                None => batch.remove(ks, k),
            }
        }
        let entry = ConfigChange {
            revision: next,
            change: Some(change),
        };
        let inner = &self.inner;
        batch.insert(&inner.changes, next.to_be_bytes(), entry.encode_to_vec());
        batch.insert(&inner.meta, REVISION_KEY, next.to_be_bytes());
        batch.commit()?;
        *revision = next;
        Ok(next)
    }

    fn put_blocking(&self, record: Record) -> Result<u64, ControlError> {
        let k = key(record.kind().as_str(), record.name());
        let v = encode_record(&record);
        self.commit(
            vec![(&self.inner.records, k, Some(v))],
            record.into_change(),
        )
    }

    fn delete_blocking(&self, kind: Kind, name: &str) -> Result<Option<u64>, ControlError> {
        let k = key(kind.as_str(), name);
        // Checked under the lock, so a concurrent delete cannot log twice.
        let revision = self.lock();
        if self.inner.records.get(&k)?.is_none() {
            return Ok(None);
        }
        let write = (&self.inner.records, k, None);
        self.commit_locked(revision, vec![write], kind.deleted(name))
            .map(Some)
    }

    fn get_blocking(&self, kind: Kind, name: &str) -> Result<Option<Record>, ControlError> {
        match self.inner.records.get(key(kind.as_str(), name))? {
            Some(v) => Ok(Some(decode_record(kind, &v)?)),
            None => Ok(None),
        }
    }

    fn list_blocking(&self, kind: Kind) -> Result<Vec<Record>, ControlError> {
        let mut out = Vec::new();
        for guard in self.inner.records.prefix(key(kind.as_str(), "")) {
            let (_, v) = guard.into_inner()?;
            out.push(decode_record(kind, &v)?);
        }
        Ok(out)
    }

    fn add_suppression_blocking(&self, s: Suppression) -> Result<u64, ControlError> {
        let k = key(&s.tenant, &s.address);
        let v = s.encode_to_vec();
        self.commit(
            vec![(&self.inner.suppressions, k, Some(v))],
            Change::SuppressionAdded(s),
        )
    }

    /// Every entry in one durable write, without a revision.
    fn import_suppressions_blocking(&self, entries: Vec<Suppression>) -> Result<(), ControlError> {
        let mut batch = self.inner.db.batch().durability(Some(PersistMode::SyncAll));
        for s in entries {
            batch.insert(
                &self.inner.suppressions,
                key(&s.tenant, &s.address),
                s.encode_to_vec(),
            );
        }
        batch.commit()?;
        Ok(())
    }

    fn remove_suppression_blocking(
        &self,
        tenant: &str,
        address: &str,
    ) -> Result<Option<u64>, ControlError> {
        let k = key(tenant, address);
        let Some(v) = self.inner.suppressions.get(&k)? else {
            return Ok(None);
        };
        let old = Suppression::decode(v.as_ref()).map_err(corrupt)?;
        let write = (&self.inner.suppressions, k, None);
        self.commit(vec![write], Change::SuppressionRemoved(old))
            .map(Some)
    }

    fn list_suppressions_blocking(
        &self,
        tenant: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Suppression>, ControlError> {
        let prefix = key(tenant, "");
        let start = key(tenant, after);
        let mut out = Vec::new();
        for guard in self.inner.suppressions.range(start.clone()..) {
            let (k, v) = guard.into_inner()?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            if k.as_ref() == start.as_slice() {
                continue;
            }
            out.push(Suppression::decode(v.as_ref()).map_err(corrupt)?);
        }
        Ok(out)
    }

    fn changes_after_blocking(
        &self,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<ConfigChange>, ControlError> {
        let start = revision.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for guard in self.inner.changes.range(start..).take(limit) {
            let (_, v) = guard.into_inner()?;
            out.push(ConfigChange::decode(v.as_ref()).map_err(corrupt)?);
        }
        Ok(out)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, ControlError>
    where
        T: Send + 'static,
        F: FnOnce(&EmbeddedConfigStore) -> Result<T, ControlError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ControlError::Task(e.to_string()))?
    }
}

fn decode_u64(bytes: &[u8]) -> Result<u64, ControlError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt("revision is not 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

#[tonic::async_trait]
impl ConfigStore for EmbeddedConfigStore {
    async fn put(&self, record: Record) -> Result<u64, ControlError> {
        self.blocking(move |s| s.put_blocking(record)).await
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<Option<u64>, ControlError> {
        let name = name.to_owned();
        self.blocking(move |s| s.delete_blocking(kind, &name)).await
    }

    async fn get(&self, kind: Kind, name: &str) -> Result<Option<Record>, ControlError> {
        let name = name.to_owned();
        self.blocking(move |s| s.get_blocking(kind, &name)).await
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Record>, ControlError> {
        self.blocking(move |s| s.list_blocking(kind)).await
    }

    async fn add_suppression(&self, suppression: Suppression) -> Result<u64, ControlError> {
        self.blocking(move |s| s.add_suppression_blocking(suppression))
            .await
    }

    async fn import_suppressions(&self, entries: Vec<Suppression>) -> Result<(), ControlError> {
        self.blocking(move |s| s.import_suppressions_blocking(entries))
            .await
    }

    async fn remove_suppression(
        &self,
        tenant: &str,
        address: &str,
    ) -> Result<Option<u64>, ControlError> {
        let (tenant, address) = (tenant.to_owned(), address.to_owned());
        self.blocking(move |s| s.remove_suppression_blocking(&tenant, &address))
            .await
    }

    async fn list_suppressions(
        &self,
        tenant: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Suppression>, ControlError> {
        let (tenant, after) = (tenant.to_owned(), after.to_owned());
        self.blocking(move |s| s.list_suppressions_blocking(&tenant, &after, limit))
            .await
    }

    async fn revision(&self) -> Result<u64, ControlError> {
        Ok(*self.lock())
    }

    async fn changes_after(
        &self,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<ConfigChange>, ControlError> {
        self.blocking(move |s| s.changes_after_blocking(revision, limit))
            .await
    }
}
