//! The embedded ledger's suppression list as a list: added, removed and
//! paged through directly, so `sluice dev`'s control service reads and
//! writes the very rows ingest checks and the recorder writes (one list per
//! tenant, docs/dev.md).

use crate::ledger::Res;
use crate::ledger_embedded::{EmbeddedLedger, fjall_err, suppression_key, table};
use crate::ledger_keys::{Key, Reader};
use crate::record::suppression_address;

/// One suppression row of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionEntry {
    /// Lowercase, as ingest compares.
    pub address: String,
    pub reason: String,
    /// When it was added, Unix milliseconds.
    pub created_ms: i64,
    /// The message that caused it; empty when added by hand.
    pub message_id: String,
}

impl EmbeddedLedger {
    /// Adds (or replaces) `tenant`'s suppression of `address`; durable when
    /// it returns.
    pub async fn put_suppression(
        &self,
        tenant: &str,
        address: &str,
        reason: &str,
        created_ms: i64,
    ) -> Res<()> {
        let entry = SuppressionEntry {
            address: address.to_owned(),
            reason: reason.to_owned(),
            created_ms,
            message_id: String::new(),
        };
        self.put_suppressions(tenant, &[entry]).await
    }

    /// Adds (or replaces) every entry of `tenant` in one durable write.
    pub async fn put_suppressions(&self, tenant: &str, entries: &[SuppressionEntry]) -> Res<()> {
        let rows: Vec<_> = entries
            .iter()
            .map(|e| {
                let key = suppression_key(tenant, &suppression_address(&e.address));
                (key, Key::new().s(&e.reason).i(e.created_ms).raw(b"").0)
            })
            .collect();
        self.blocking(move |l| l.write(|_| Ok(((), rows)))).await
    }

    /// Removes `tenant`'s suppression of `address`; false when there was none.
    pub async fn remove_suppression(&self, tenant: &str, address: &str) -> Res<bool> {
        let key = suppression_key(tenant, &suppression_address(address));
        self.blocking(move |l| l.remove(&key)).await
    }

    /// Up to `limit` suppressions of `tenant` with addresses after `after`
    /// (empty: from the start), ordered by address.
    pub async fn list_suppressions(
        &self,
        tenant: &str,
        after: &str,
        limit: usize,
    ) -> Res<Vec<SuppressionEntry>> {
        let (tenant, after) = (tenant.to_owned(), after.to_owned());
        self.blocking(move |l| l.list_suppressions_blocking(&tenant, &after, limit))
            .await
    }

    fn list_suppressions_blocking(
        &self,
        tenant: &str,
        after: &str,
        limit: usize,
    ) -> Res<Vec<SuppressionEntry>> {
        let prefix = Key::new().raw(&[table::SUPPRESSIONS]).s(tenant).0;
        let mut start = prefix.clone();
        start.extend_from_slice(after.as_bytes());
        let mut out = Vec::new();
        for guard in self.inner.rows.range(start..) {
            let (key, value) = guard
                .into_inner()
                .map_err(fjall_err("listing suppressions"))?;
            let Some(address) = key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            if address == after.as_bytes() {
                continue;
            }
            if out.len() == limit {
                break;
            }
            let mut r = Reader(&value);
            out.push(SuppressionEntry {
                address: String::from_utf8_lossy(address).into_owned(),
                reason: r.s()?,
                created_ms: r.i()?,
                message_id: r.rest()?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ledger;

    fn ledger() -> (tempfile::TempDir, EmbeddedLedger) {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = EmbeddedLedger::open(dir.path(), 1, 1).expect("open");
        (dir, ledger)
    }

    fn addresses(entries: &[SuppressionEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.address.as_str()).collect()
    }

    #[tokio::test]
    async fn added_suppressions_are_checked_listed_in_pages_and_removed() {
        let (_dir, l) = ledger();
        for a in ["c@x.test", "A@x.test", "b@x.test"] {
            l.put_suppression("acme", a, "manual", 1_000)
                .await
                .expect("put");
        }
        l.put_suppression("other", "z@x.test", "manual", 1)
            .await
            .expect("put");
        let asked = vec!["a@x.test".to_owned(), "z@x.test".to_owned()];
        assert_eq!(
            l.suppressed("acme", &asked).await.expect("check"),
            ["a@x.test"]
        );

        let first = l.list_suppressions("acme", "", 2).await.expect("list");
        assert_eq!(addresses(&first), ["a@x.test", "b@x.test"]);
        assert_eq!(first[0].reason, "manual");
        assert_eq!(first[0].created_ms, 1_000);
        let rest = l
            .list_suppressions("acme", "b@x.test", 2)
            .await
            .expect("list");
        assert_eq!(addresses(&rest), ["c@x.test"], "pages end at the tenant");

        assert!(
            l.remove_suppression("acme", "B@x.test")
                .await
                .expect("remove")
        );
        assert!(
            !l.remove_suppression("acme", "b@x.test")
                .await
                .expect("again")
        );
        let left = l.list_suppressions("acme", "", 10).await.expect("list");
        assert_eq!(addresses(&left), ["a@x.test", "c@x.test"]);
    }
}
