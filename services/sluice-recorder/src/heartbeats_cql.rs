//! Ingest heartbeats on ScyllaDB/Cassandra: table `ingest_heartbeats`, one
//! partition (`scope = 'ingest'`) with a row per node written with the
//! heartbeat's TTL, so a dead node's row disappears on its own; the live
//! nodes are the rows of that partition.

use crate::RecorderError;
use crate::heartbeats::IngestNodes;
use crate::ledger::Res;
use crate::ledger_cql::CqlLedger;

/// The one partition of `ingest_heartbeats`.
const SCOPE: &str = "ingest";

/// Seconds of a TTL given in milliseconds (at least 1, rounded up).
fn ttl_secs(ms: u64) -> i32 {
    i32::try_from(ms.div_ceil(1000).max(1)).unwrap_or(i32::MAX)
}

impl IngestNodes for CqlLedger {
    async fn ingest_heartbeat(&self, node: &str, ttl_ms: u64) -> Res<u32> {
        let err = |what: &str, e: &dyn std::fmt::Display| RecorderError::cql(what.to_owned(), e);
        let write = format!(
            "INSERT INTO {}.ingest_heartbeats (scope, node, seen) VALUES (?, ?, ?) USING TTL ?",
            self.ks
        );
        let seen = scylla::value::CqlTimestamp(crate::ledger_embedded::now_ms());
        self.session
            .query_unpaged(write, (SCOPE, node, seen, ttl_secs(ttl_ms)))
            .await
            .map_err(|e| err("writing an ingest heartbeat", &e))?;
        let read = format!(
            "SELECT node FROM {}.ingest_heartbeats WHERE scope = ?",
            self.ks
        );
        let what = "counting live ingest nodes";
        let rows = self
            .session
            .query_unpaged(read, (SCOPE,))
            .await
            .map_err(|e| err(what, &e))?
            .into_rows_result()
            .map_err(|e| err(what, &e))?;
        let mut live = 0u32;
        for row in rows.rows::<(String,)>().map_err(|e| err(what, &e))? {
            row.map_err(|e| err(what, &e))?;
            live = live.saturating_add(1);
        }
        Ok(live)
    }
}
