//! The Query service's idempotency-key calls: checks that name the field,
//! then the ledger's [`IdempotencyKeys`].

use sluice_proto::v1::claim_idempotency_key_response::State;
use sluice_proto::v1::settle_idempotency_key_request::Outcome;
use sluice_proto::v1::{
    ClaimIdempotencyKeyRequest, ClaimIdempotencyKeyResponse, SettleIdempotencyKeyRequest,
    SettleIdempotencyKeyResponse,
};

use crate::RecorderError;
use crate::keys::{IdempotencyKeys, KeyClaim, KeyOutcome};
use crate::ledger::AnyLedger;

/// Longest idempotency key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
const SECOND_MS: u64 = 1_000;

fn bad(field: &'static str, reason: impl Into<String>) -> RecorderError {
    RecorderError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

fn check_names(tenant: &str, key: &str, holder: &str) -> Result<(), RecorderError> {
    if tenant.is_empty() {
        return Err(bad("tenant", "is required"));
    }
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(bad("key", format!("must be 1 to {MAX_KEY_BYTES} bytes")));
    }
    if holder.is_empty() || holder.len() > MAX_KEY_BYTES {
        return Err(bad("holder", format!("must be 1 to {MAX_KEY_BYTES} bytes")));
    }
    Ok(())
}

fn check_span(field: &'static str, ms: u64, max_ms: u64) -> Result<(), RecorderError> {
    if (SECOND_MS..=max_ms).contains(&ms) {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("must be between 1000 and {max_ms} ms, not {ms}"),
        ))
    }
}

/// `ClaimIdempotencyKey`.
pub async fn claim(
    ledger: &AnyLedger,
    req: ClaimIdempotencyKeyRequest,
) -> Result<ClaimIdempotencyKeyResponse, RecorderError> {
    check_names(&req.tenant, &req.key, &req.holder)?;
    check_span("lease_ms", req.lease_ms, 3_600 * SECOND_MS)?;
    let claim = ledger
        .claim_key(&req.tenant, &req.key, &req.holder, req.lease_ms)
        .await?;
    let mut response = ClaimIdempotencyKeyResponse::default();
    match claim {
        KeyClaim::Started(ids) => {
            response.set_state(State::Started);
            response.reuse_ids = ids;
        }
        KeyClaim::InFlight => response.set_state(State::InFlight),
        KeyClaim::Done(answer) => {
            response.set_state(State::Done);
            response.response = answer;
        }
    }
    Ok(response)
}

/// `SettleIdempotencyKey`.
pub async fn settle(
    ledger: &AnyLedger,
    req: SettleIdempotencyKeyRequest,
) -> Result<SettleIdempotencyKeyResponse, RecorderError> {
    check_names(&req.tenant, &req.key, &req.holder)?;
    check_span("ttl_ms", req.ttl_ms, 7 * 86_400 * SECOND_MS)?;
    let outcome = match req.outcome {
        Some(Outcome::Response(bytes)) => KeyOutcome::Done(bytes),
        Some(Outcome::Failed(failed)) => KeyOutcome::Failed(failed.ids),
        None => return Err(bad("outcome", "is required: response or failed")),
    };
    let settled = ledger
        .settle_key(&req.tenant, &req.key, &req.holder, &outcome, req.ttl_ms)
        .await?;
    Ok(SettleIdempotencyKeyResponse { settled })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_field_by_field() {
        assert!(check_names("acme", "k", "h").is_ok());
        let err = check_names("", "k", "h").unwrap_err().to_string();
        assert!(err.contains("tenant"), "{err}");
        let err = check_names("acme", &"k".repeat(257), "h")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key"), "{err}");
        let err = check_span("lease_ms", 10, 3_600_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lease_ms") && err.contains("not 10"), "{err}");
    }
}
