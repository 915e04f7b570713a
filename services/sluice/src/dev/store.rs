//! `sluice dev`'s control store: records in control's embedded store,
//! suppressions in the recorder's ledger — the list ingest checks and the
//! recorder writes — so a tenant has one suppression list, as on
//! Cassandra/ScyllaDB (docs/dev.md, "One suppression list").
//!
//! Suppression changes get no revision of their own here: nothing follows
//! them through Watch (ingest asks the ledger per submission), so they
//! answer the current revision and are not in the change log.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_control::{ConfigStore, ControlError, Kind, Record};
use sluice_proto::v1::{ConfigChange, IpLease, Suppression};
use sluice_recorder::{AnyLedger, EmbeddedLedger, SuppressionEntry};

/// Control's store in `sluice dev`.
pub struct DevStore {
    records: Arc<dyn ConfigStore>,
    ledger: Arc<AnyLedger>,
}

impl DevStore {
    /// Records in `records`; suppressions in `ledger`, which must be the
    /// embedded one (dev has no other).
    pub fn shared(records: Arc<dyn ConfigStore>, ledger: Arc<AnyLedger>) -> Arc<dyn ConfigStore> {
        Arc::new(Self { records, ledger })
    }

    fn ledger(&self) -> Result<&EmbeddedLedger, ControlError> {
        match self.ledger.as_ref() {
            AnyLedger::Embedded(ledger) => Ok(ledger),
            AnyLedger::Cql(_) => Err(ControlError::Delegated(
                "sluice dev keeps suppressions in its embedded ledger; a CQL ledger holds them itself"
                    .into(),
            )),
        }
    }
}

fn store_error(err: sluice_recorder::RecorderError) -> ControlError {
    ControlError::Delegated(format!("the ledger's suppression list: {err}"))
}

fn millis(at: Option<&prost_types::Timestamp>) -> i64 {
    at.map_or(0, |t| {
        t.seconds.saturating_mul(1_000) + i64::from(t.nanos / 1_000_000)
    })
}

fn suppression(tenant: &str, entry: SuppressionEntry) -> Suppression {
    Suppression {
        tenant: tenant.to_owned(),
        address: entry.address,
        reason: entry.reason,
        created_at: Some(prost_types::Timestamp {
            seconds: entry.created_ms.div_euclid(1_000),
            nanos: (entry.created_ms.rem_euclid(1_000) * 1_000_000) as i32,
        }),
    }
}

#[tonic::async_trait]
impl ConfigStore for DevStore {
    async fn put(&self, record: Record) -> Result<u64, ControlError> {
        self.records.put(record).await
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<Option<u64>, ControlError> {
        self.records.delete(kind, name).await
    }

    async fn get(&self, kind: Kind, name: &str) -> Result<Option<Record>, ControlError> {
        self.records.get(kind, name).await
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Record>, ControlError> {
        self.records.list(kind).await
    }

    async fn add_suppression(&self, s: Suppression) -> Result<u64, ControlError> {
        let at = millis(s.created_at.as_ref());
        self.ledger()?
            .put_suppression(&s.tenant, &s.address, &s.reason, at)
            .await
            .map_err(store_error)?;
        self.records.revision().await
    }

    async fn import_suppressions(&self, entries: Vec<Suppression>) -> Result<(), ControlError> {
        // Validated imports are of one tenant.
        let Some(tenant) = entries.first().map(|s| s.tenant.clone()) else {
            return Ok(());
        };
        let rows: Vec<SuppressionEntry> = entries
            .into_iter()
            .map(|s| SuppressionEntry {
                created_ms: millis(s.created_at.as_ref()),
                address: s.address,
                reason: s.reason,
                message_id: String::new(),
            })
            .collect();
        let ledger = self.ledger()?;
        ledger
            .put_suppressions(&tenant, &rows)
            .await
            .map_err(store_error)
    }

    async fn remove_suppression(
        &self,
        tenant: &str,
        address: &str,
    ) -> Result<Option<u64>, ControlError> {
        let removed = self.ledger()?.remove_suppression(tenant, address).await;
        match removed.map_err(store_error)? {
            true => self.records.revision().await.map(Some),
            false => Ok(None),
        }
    }

    async fn list_suppressions(
        &self,
        tenant: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Suppression>, ControlError> {
        let found = self.ledger()?.list_suppressions(tenant, after, limit).await;
        let found = found.map_err(store_error)?;
        Ok(found.into_iter().map(|e| suppression(tenant, e)).collect())
    }

    async fn revision(&self) -> Result<u64, ControlError> {
        self.records.revision().await
    }

    async fn leases(&self) -> Result<HashMap<String, IpLease>, ControlError> {
        self.records.leases().await
    }

    async fn changes_after(
        &self,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<ConfigChange>, ControlError> {
        self.records.changes_after(revision, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_their_milliseconds_both_ways() {
        let entry = SuppressionEntry {
            address: "a@x.test".into(),
            reason: "manual".into(),
            created_ms: 1_700_000_000_123,
            message_id: String::new(),
        };
        let s = suppression("t", entry);
        assert_eq!(millis(s.created_at.as_ref()), 1_700_000_000_123);
        assert_eq!(millis(None), 0);
    }
}
