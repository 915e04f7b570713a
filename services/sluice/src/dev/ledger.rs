//! The recorder's ledger handed to ingest in process: `sluice dev` answers
//! ingest's per-submission suppression check and its idempotency keys from
//! the embedded ledger directly, with no Query round trip.

use std::sync::Arc;

use sluice_ingest::shared_keys::{KeysFuture, SharedClaim, SharedKeys, SharedOutcome};
use sluice_ingest::{LookupFuture, SuppressionLookup};
use sluice_recorder::{AnyLedger, IdempotencyKeys, KeyClaim, KeyOutcome, Ledger};

/// Ingest's suppression check and idempotency keys on the recorder's ledger.
pub struct InProcessLedger(pub Arc<AnyLedger>);

impl SuppressionLookup for InProcessLedger {
    fn suppressed<'a>(&'a self, tenant: &'a str, addresses: &'a [String]) -> LookupFuture<'a> {
        Box::pin(async move {
            self.0
                .suppressed(tenant, addresses)
                .await
                .map_err(|err| err.to_string())
        })
    }
}

impl SharedKeys for InProcessLedger {
    fn claim<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        holder: &'a str,
        lease_ms: u64,
    ) -> KeysFuture<'a, SharedClaim> {
        Box::pin(async move {
            let claim = self.0.claim_key(tenant, key, holder, lease_ms).await;
            Ok(match claim.map_err(|e| e.to_string())? {
                KeyClaim::Started(ids) => SharedClaim::Started(ids),
                KeyClaim::InFlight => SharedClaim::InFlight,
                KeyClaim::Done(answer) => SharedClaim::Done(answer),
            })
        })
    }

    fn settle<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        holder: &'a str,
        outcome: SharedOutcome,
        ttl_ms: u64,
    ) -> KeysFuture<'a, bool> {
        Box::pin(async move {
            let outcome = match outcome {
                SharedOutcome::Done(answer) => KeyOutcome::Done(answer),
                SharedOutcome::Failed(ids) => KeyOutcome::Failed(ids),
            };
            self.0
                .settle_key(tenant, key, holder, &outcome, ttl_ms)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
