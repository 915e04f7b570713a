//! Ingest heartbeats in the embedded ledger: one expiring row per node
//! (written under the write mutex, like every row); the live nodes are the
//! rows whose TTL has not passed.

use crate::heartbeats::IngestNodes;
use crate::ledger::Res;
use crate::ledger_embedded::{EmbeddedLedger, fjall_err, now_ms, table};
use crate::ledger_keys::{self as keys, Key};

impl IngestNodes for EmbeddedLedger {
    async fn ingest_heartbeat(&self, node: &str, ttl_ms: u64) -> Res<u32> {
        let row = Key::new().raw(&[table::INGEST_NODES]).s(node);
        self.blocking(move |ledger| {
            let expires = now_ms().saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
            ledger.write(|_| Ok(((), Self::expiring(row, expires, &[]).into())))?;
            let now = now_ms();
            let mut live = 0u32;
            for pair in ledger.inner.rows.prefix([table::INGEST_NODES]) {
                let (_, value) = pair
                    .into_inner()
                    .map_err(fjall_err("scanning ingest heartbeats"))?;
                if keys::live(&value, now)?.is_some() {
                    live = live.saturating_add(1);
                }
            }
            Ok(live)
        })
        .await
    }
}
