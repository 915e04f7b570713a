//! Idempotency keys shared by every ingest node: a submission claims
//! (tenant, key), then settles it with its answer or with the message ids a
//! retry must reuse. Kept in the ledger, so every ingest node (through the
//! Query service, or in process in `sluice dev`) sees the same keys, and they
//! survive restarts. The state machine is the same on both back ends:
//!
//! ```text
//! (none) ──claim──▶ in_flight(holder, lease) ──settle ok──▶ done(response, ttl)
//!                        │  lease ran out: the row is gone      │
//!                        └─settle failed─▶ failed(ids, ttl) ──claim──▶ in_flight (reuse ids)
//! ```

use std::future::Future;

use crate::ledger::{AnyLedger, Res};

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The caller holds the key; reuse these ids (by recipient index) when
    /// not empty (an earlier attempt failed after some records were durable).
    Started(Vec<String>),
    /// Another submission holds the key.
    InFlight,
    /// The key was answered: the stored answer.
    Done(Vec<u8>),
}

/// How a claimed submission ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    /// The answer to replay.
    Done(Vec<u8>),
    /// The ids a retry reuses.
    Failed(Vec<String>),
}

/// The stored state of a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum KeyState {
    InFlight { holder: String },
    Failed { holder: String, ids: Vec<String> },
    Done { holder: String, response: Vec<u8> },
}

impl KeyState {
    /// What a claim by `holder` makes of this state: the answer, and the new
    /// state to store (`None`: unchanged).
    pub(crate) fn claim(current: Option<&KeyState>, holder: &str) -> (KeyClaim, Option<KeyState>) {
        let take = || {
            Some(KeyState::InFlight {
                holder: holder.to_owned(),
            })
        };
        match current {
            None => (KeyClaim::Started(Vec::new()), take()),
            Some(KeyState::InFlight { .. }) => (KeyClaim::InFlight, None),
            Some(KeyState::Failed { ids, .. }) => (KeyClaim::Started(ids.clone()), take()),
            Some(KeyState::Done { response, .. }) => (KeyClaim::Done(response.clone()), None),
        }
    }

    /// The state `outcome` leaves when settled by `holder`; `None` when
    /// `holder` does not hold the key (its lease ran out and it is gone or
    /// someone else's).
    pub(crate) fn settle(
        current: Option<&KeyState>,
        holder: &str,
        outcome: &KeyOutcome,
    ) -> Option<KeyState> {
        match current {
            Some(KeyState::InFlight { holder: h }) if h == holder => Some(match outcome {
                KeyOutcome::Done(response) => KeyState::Done {
                    holder: holder.to_owned(),
                    response: response.clone(),
                },
                KeyOutcome::Failed(ids) => KeyState::Failed {
                    holder: holder.to_owned(),
                    ids: ids.clone(),
                },
            }),
            _ => None,
        }
    }
}

/// Idempotency keys in the ledger.
pub trait IdempotencyKeys: Send + Sync + 'static {
    /// Claims `(tenant, key)` for `holder`; an unsettled claim lapses after
    /// `lease_ms`.
    fn claim_key(
        &self,
        tenant: &str,
        key: &str,
        holder: &str,
        lease_ms: u64,
    ) -> impl Future<Output = Res<KeyClaim>> + Send;
    /// Settles `holder`'s claim with `outcome`, remembered `ttl_ms`; false
    /// when `holder` no longer held it.
    fn settle_key(
        &self,
        tenant: &str,
        key: &str,
        holder: &str,
        outcome: &KeyOutcome,
        ttl_ms: u64,
    ) -> impl Future<Output = Res<bool>> + Send;
}

impl IdempotencyKeys for AnyLedger {
    async fn claim_key(&self, tenant: &str, key: &str, holder: &str, lease: u64) -> Res<KeyClaim> {
        match self {
            AnyLedger::Cql(l) => l.claim_key(tenant, key, holder, lease).await,
            AnyLedger::Embedded(l) => l.claim_key(tenant, key, holder, lease).await,
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
        match self {
            AnyLedger::Cql(l) => l.settle_key(tenant, key, holder, outcome, ttl).await,
            AnyLedger::Embedded(l) => l.settle_key(tenant, key, holder, outcome, ttl).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine() {
        let (claim, next) = KeyState::claim(None, "a");
        assert_eq!(claim, KeyClaim::Started(vec![]));
        let held = next.expect("taken");
        assert_eq!(KeyState::claim(Some(&held), "b").0, KeyClaim::InFlight);
        let failed = KeyOutcome::Failed(vec!["m1".into()]);
        assert_eq!(
            KeyState::settle(Some(&held), "b", &failed),
            None,
            "only the holder settles"
        );
        let after = KeyState::settle(Some(&held), "a", &failed).expect("settled");
        let (claim, next) = KeyState::claim(Some(&after), "b");
        assert_eq!(
            claim,
            KeyClaim::Started(vec!["m1".into()]),
            "a retry reuses the ids"
        );
        let held = next.expect("taken by b");
        let done = KeyState::settle(Some(&held), "b", &KeyOutcome::Done(vec![7])).expect("done");
        assert_eq!(
            KeyState::claim(Some(&done), "c"),
            (KeyClaim::Done(vec![7]), None)
        );
        assert_eq!(
            KeyState::settle(None, "a", &failed),
            None,
            "a lapsed claim settles nothing"
        );
    }
}
