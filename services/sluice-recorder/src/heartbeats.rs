//! Which ingest nodes are alive: each ingest node that shares its keys
//! through the Query service calls `IngestHeartbeat` every second; the row
//! it writes lives for the TTL it names, and the answer counts the live
//! rows. Ingest nodes divide every tenant's `rate_quota` by that count
//! (docs/ingest.md, "Quotas across nodes"). Kept on both back ends: table
//! `ingest_heartbeats` on CQL (`heartbeats_cql`), expiring rows on the
//! embedded ledger (`heartbeats_embedded`).

use std::future::Future;

use sluice_proto::v1::{IngestHeartbeatRequest, IngestHeartbeatResponse};

use crate::RecorderError;
use crate::ledger::{AnyLedger, Res};

/// Longest node id, in bytes.
pub const MAX_NODE_BYTES: usize = 256;
/// Shortest heartbeat TTL, in ms.
pub const MIN_TTL_MS: u64 = 1_000;
/// Longest heartbeat TTL, in ms.
pub const MAX_TTL_MS: u64 = 60_000;

/// Heartbeats of ingest nodes in the ledger.
pub trait IngestNodes: Send + Sync + 'static {
    /// Records that `node` is alive for `ttl_ms` and returns how many
    /// ingest nodes are alive now, `node` included.
    fn ingest_heartbeat(&self, node: &str, ttl_ms: u64) -> impl Future<Output = Res<u32>> + Send;
}

impl IngestNodes for AnyLedger {
    async fn ingest_heartbeat(&self, node: &str, ttl_ms: u64) -> Res<u32> {
        match self {
            AnyLedger::Cql(l) => l.ingest_heartbeat(node, ttl_ms).await,
            AnyLedger::Embedded(l) => l.ingest_heartbeat(node, ttl_ms).await,
        }
    }
}

fn bad(field: &'static str, reason: String) -> RecorderError {
    RecorderError::InvalidArgument { field, reason }
}

/// The checks of an `IngestHeartbeat` request, naming the field at fault.
pub(crate) fn check(req: &IngestHeartbeatRequest) -> Result<(), RecorderError> {
    if req.node.is_empty() || req.node.len() > MAX_NODE_BYTES {
        return Err(bad("node", format!("must be 1 to {MAX_NODE_BYTES} bytes")));
    }
    if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&req.ttl_ms) {
        return Err(bad(
            "ttl_ms",
            format!(
                "must be between {MIN_TTL_MS} and {MAX_TTL_MS} ms, not {}",
                req.ttl_ms
            ),
        ));
    }
    Ok(())
}

/// `IngestHeartbeat`.
pub async fn heartbeat(
    ledger: &AnyLedger,
    req: IngestHeartbeatRequest,
) -> Result<IngestHeartbeatResponse, RecorderError> {
    check(&req)?;
    let live = ledger.ingest_heartbeat(&req.node, req.ttl_ms).await?;
    Ok(IngestHeartbeatResponse {
        live_nodes: live.max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(node: &str, ttl_ms: u64) -> IngestHeartbeatRequest {
        IngestHeartbeatRequest {
            node: node.into(),
            ttl_ms,
        }
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        assert!(check(&req("ingest-1", 5_000)).is_ok());
        let err = check(&req("", 5_000)).unwrap_err().to_string();
        assert!(err.contains("node"), "{err}");
        let err = check(&req(&"n".repeat(257), 5_000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("node"), "{err}");
        for ttl in [0, 999, 60_001] {
            let err = check(&req("n", ttl)).unwrap_err().to_string();
            assert!(
                err.contains("ttl_ms") && err.contains(&format!("not {ttl}")),
                "{err}"
            );
        }
    }
}
