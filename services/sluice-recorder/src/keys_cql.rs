//! Idempotency keys on ScyllaDB/Cassandra: table `idempotency_keys`, every
//! change a lightweight transaction, so two ingest nodes claiming one key at
//! once get one `Started` and one `InFlight`.

use std::collections::HashMap;

use scylla::serialize::row::SerializeRow;
use scylla::value::{CqlValue, Row};

use crate::RecorderError;
use crate::keys::{IdempotencyKeys, KeyClaim, KeyOutcome};
use crate::ledger::Res;
use crate::ledger_cql::CqlLedger;

/// Seconds of a TTL given in milliseconds (at least 1, rounded up).
fn ttl_secs(ms: u64) -> i32 {
    i32::try_from(ms.div_ceil(1000).max(1)).unwrap_or(i32::MAX)
}

impl CqlLedger {
    /// Runs a lightweight transaction; whether it applied, and the current
    /// row's cells by column name when it did not.
    async fn lwt(
        &self,
        what: &str,
        cql: String,
        values: impl SerializeRow,
    ) -> Res<(bool, HashMap<String, CqlValue>)> {
        let err = |e: &dyn std::fmt::Display| RecorderError::cql(what.to_owned(), e);
        let result = self
            .session
            .query_unpaged(cql, values)
            .await
            .map_err(|e| err(&e))?
            .into_rows_result()
            .map_err(|e| err(&e))?;
        let names: Vec<String> = result
            .column_specs()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let row = result
            .rows::<Row>()
            .map_err(|e| err(&e))?
            .next()
            .ok_or_else(|| err(&"no [applied] row"))?
            .map_err(|e| err(&e))?;
        let cells: HashMap<String, CqlValue> = names
            .into_iter()
            .zip(row.columns)
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect();
        let applied = cells.get("[applied]").and_then(CqlValue::as_boolean) == Some(true);
        Ok((applied, cells))
    }

    /// Takes a failed key for `holder`: true when it did.
    async fn retake(
        &self,
        tenant: &str,
        key: &str,
        holder: &str,
        old: &str,
        lease: u64,
    ) -> Res<bool> {
        let cql = format!(
            "UPDATE {}.idempotency_keys USING TTL ? SET state = 'in_flight', holder = ? \
             WHERE tenant = ? AND key = ? IF state = 'failed' AND holder = ?",
            self.ks
        );
        let values = (ttl_secs(lease), holder, tenant, key, old);
        Ok(self
            .lwt("retaking an idempotency key", cql, values)
            .await?
            .0)
    }
}

fn text<'a>(cells: &'a HashMap<String, CqlValue>, name: &str) -> &'a str {
    cells
        .get(name)
        .and_then(CqlValue::as_text)
        .map_or("", String::as_str)
}

impl IdempotencyKeys for CqlLedger {
    async fn claim_key(&self, tenant: &str, key: &str, holder: &str, lease: u64) -> Res<KeyClaim> {
        let cql = format!(
            "INSERT INTO {}.idempotency_keys (tenant, key, state, holder) \
             VALUES (?, ?, 'in_flight', ?) IF NOT EXISTS USING TTL ?",
            self.ks
        );
        let values = (tenant, key, holder, ttl_secs(lease));
        let (applied, cells) = self.lwt("claiming an idempotency key", cql, values).await?;
        if applied {
            return Ok(KeyClaim::Started(Vec::new()));
        }
        match text(&cells, "state") {
            "done" => {
                let response = cells.get("response").and_then(CqlValue::as_blob).cloned();
                Ok(KeyClaim::Done(response.unwrap_or_default()))
            }
            "failed" => {
                let ids: Vec<String> = cells
                    .get("ids")
                    .and_then(CqlValue::as_list)
                    .map(|l| l.iter().filter_map(|v| v.as_text().cloned()).collect())
                    .unwrap_or_default();
                let old = text(&cells, "holder").to_owned();
                if self.retake(tenant, key, holder, &old, lease).await? {
                    Ok(KeyClaim::Started(ids))
                } else {
                    Ok(KeyClaim::InFlight)
                }
            }
            _ => Ok(KeyClaim::InFlight),
        }
    }

    async fn settle_key(
        &self,
        tenant: &str,
        key: &str,
        holder: &str,
        outcome: &KeyOutcome,
        ttl: u64,
    ) -> Res<bool> {
        let (state, ids, response): (&str, Vec<String>, Option<Vec<u8>>) = match outcome {
            KeyOutcome::Done(response) => ("done", Vec::new(), Some(response.clone())),
            KeyOutcome::Failed(ids) => ("failed", ids.clone(), None),
        };
        let cql = format!(
            "UPDATE {}.idempotency_keys USING TTL ? SET state = ?, ids = ?, response = ? \
             WHERE tenant = ? AND key = ? IF state = 'in_flight' AND holder = ?",
            self.ks
        );
        let values = (ttl_secs(ttl), state, ids, response, tenant, key, holder);
        Ok(self
            .lwt("settling an idempotency key", cql, values)
            .await?
            .0)
    }
}
