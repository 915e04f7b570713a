//! Idempotency keys in the embedded ledger: one row per (tenant, key) that
//! expires with the claim's lease or the outcome's TTL; every change under the
//! ledger's write mutex, so claims are atomic.

use crate::RecorderError;
use crate::keys::{IdempotencyKeys, KeyClaim, KeyOutcome, KeyState};
use crate::ledger::Res;
use crate::ledger_embedded::{EmbeddedLedger, now_ms, table};
use crate::ledger_keys::{self as keys, Key};

fn row(tenant: &str, key: &str) -> Key {
    Key::new().raw(&[table::KEYS]).s(tenant).raw(key.as_bytes())
}

fn expires(ms: u64) -> i64 {
    now_ms().saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
}

impl EmbeddedLedger {
    /// The live state of a key.
    fn key_state(rows: &fjall::Keyspace, row: &Key) -> Res<Option<KeyState>> {
        let stored = rows
            .get(&row.0)
            .map_err(|e| RecorderError::embedded("reading an idempotency key", e))?;
        let Some(value) = stored else { return Ok(None) };
        let Some(payload) = keys::live(&value, now_ms())? else {
            return Ok(None);
        };
        serde_json::from_slice(payload)
            .map(Some)
            .map_err(|e| RecorderError::embedded("decoding an idempotency key", e))
    }

    fn put_state(row: Key, state: &KeyState, ms: u64) -> Res<Vec<(Key, Vec<u8>)>> {
        let bytes = serde_json::to_vec(state)
            .map_err(|e| RecorderError::embedded("encoding an idempotency key", e))?;
        Ok(Self::expiring(row, expires(ms), &bytes).into())
    }
}

impl IdempotencyKeys for EmbeddedLedger {
    async fn claim_key(&self, tenant: &str, key: &str, holder: &str, lease: u64) -> Res<KeyClaim> {
        let (row, holder) = (row(tenant, key), holder.to_owned());
        self.blocking(move |ledger| {
            ledger.write(|rows| {
                let current = Self::key_state(rows, &row)?;
                let (claim, next) = KeyState::claim(current.as_ref(), &holder);
                let puts = match next {
                    Some(state) => Self::put_state(row, &state, lease)?,
                    None => Vec::new(),
                };
                Ok((claim, puts))
            })
        })
        .await
    }

    async fn settle_key(
        &self,
        tenant: &str,
        key: &str,
        holder: &str,
        outcome: &KeyOutcome,
        ttl: u64,
    ) -> Res<bool> {
        let (row, holder, outcome) = (row(tenant, key), holder.to_owned(), outcome.clone());
        self.blocking(move |ledger| {
            ledger.write(|rows| {
                let current = Self::key_state(rows, &row)?;
                match KeyState::settle(current.as_ref(), &holder, &outcome) {
                    Some(state) => Ok((true, Self::put_state(row, &state, ttl)?)),
                    None => Ok((false, Vec::new())),
                }
            })
        })
        .await
    }
}
