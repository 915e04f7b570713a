//! The recorder's suppressions handed to ingest in process: `sluice dev`
//! answers ingest's per-submission check from the embedded ledger directly,
//! with no Query round trip.

use std::sync::Arc;

use sluice_ingest::{LookupFuture, SuppressionLookup};
use sluice_recorder::{AnyLedger, Ledger};

/// Ingest's suppression check on the recorder's ledger.
pub struct LedgerSuppressions(pub Arc<AnyLedger>);

impl SuppressionLookup for LedgerSuppressions {
    fn suppressed<'a>(&'a self, tenant: &'a str, addresses: &'a [String]) -> LookupFuture<'a> {
        Box::pin(async move {
            self.0
                .suppressed(tenant, addresses)
                .await
                .map_err(|err| err.to_string())
        })
    }
}
