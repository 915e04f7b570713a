//! Where idempotency keys live: in this node's memory ([`IdempotencyStore`])
//! or shared by every ingest node ([`SharedKeys`]: the recorder's Query
//! service, or the ledger in process in `sluice dev`). A shared store that
//! cannot answer refuses keyed submissions as unavailable: answering a retry
//! without knowing whether the first attempt was published could send twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use sluice_control_client::Bearer;
use sluice_proto::v1::claim_idempotency_key_response::State;
use sluice_proto::v1::query_client::QueryClient;
use sluice_proto::v1::settle_idempotency_key_request::Outcome;
use sluice_proto::v1::{
    ClaimIdempotencyKeyRequest, FailedIds, SendResponse, SettleIdempotencyKeyRequest,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::IngestError;
use crate::config::IdempotencyConfig;
use crate::idempotency::{Begin, IdempotencyStore};

/// A boxed future of a shared key store.
pub type KeysFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// What a claim of a shared key found.
#[derive(Debug, Clone, PartialEq)]
pub enum SharedClaim {
    /// Ours; reuse these ids when not empty.
    Started(Vec<String>),
    /// Another submission holds it.
    InFlight,
    /// Answered before: the answer, an encoded `SendResponse`.
    Done(Vec<u8>),
}

/// How a claimed submission ended, as a shared store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum SharedOutcome {
    /// The answer, an encoded `SendResponse`.
    Done(Vec<u8>),
    Failed(Vec<String>),
}

/// How a submission with a key ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// It was accepted with this answer (replayed to retries).
    Answered(SendResponse),
    /// It failed; a retry reuses these ids (empty: new ones).
    Failed(Vec<String>),
}

/// Idempotency keys shared by every ingest node (`sluice dev` implements it
/// on its ledger; [`QueryKeys`] on the recorder's Query service).
pub trait SharedKeys: Send + Sync + 'static {
    fn claim<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        holder: &'a str,
        lease_ms: u64,
    ) -> KeysFuture<'a, SharedClaim>;
    fn settle<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        holder: &'a str,
        outcome: SharedOutcome,
        ttl_ms: u64,
    ) -> KeysFuture<'a, bool>;
}

/// Where this node keeps idempotency keys.
pub enum Idempotency {
    Local(IdempotencyStore),
    Shared {
        keys: Arc<dyn SharedKeys>,
        via: String,
        ttl_ms: u64,
        lease_ms: u64,
    },
}

/// A claim held by this node: settle it with [`Idempotency::settle`].
pub struct Held {
    holder: String,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Idempotency {
    /// The store `config` names: the Query service at `query_addr`, or
    /// memory when it is empty. Connects lazily.
    pub fn from_config(
        config: &IdempotencyConfig,
        tls: &sluice_node::tls::TlsConfig,
    ) -> Result<Self, IngestError> {
        let addr = config.query_addr.trim();
        if addr.is_empty() {
            let store = IdempotencyStore::new(config.ttl.into(), config.max_entries);
            return Ok(Self::Local(store));
        }
        let bearer = crate::suppression::query_bearer(
            "idempotency.token_file",
            config.token_file.as_deref(),
        )?;
        let keys = QueryKeys::connect(addr, config.timeout.into(), bearer, tls)?;
        Ok(Self::shared(
            Arc::new(keys),
            format!("the Query service at idempotency.query_addr {addr}"),
            config,
        ))
    }

    /// A shared store reached through `keys` (named `via` in errors).
    pub fn shared(keys: Arc<dyn SharedKeys>, via: String, config: &IdempotencyConfig) -> Self {
        Self::Shared {
            keys,
            via,
            ttl_ms: millis(config.ttl.into()).max(1_000),
            lease_ms: millis(config.lease.into()).max(1_000),
        }
    }

    /// Begins a submission with `key`.
    pub async fn begin(&self, tenant: &str, key: &str) -> Result<(Begin, Held), IngestError> {
        let holder = ulid::Ulid::new().to_string();
        let begin = match self {
            Self::Local(store) => store.begin(tenant, key, Instant::now()),
            Self::Shared {
                keys,
                via,
                lease_ms,
                ..
            } => {
                let claim = keys.claim(tenant, key, &holder, *lease_ms).await;
                match claim.map_err(|reason| unavailable(via, reason))? {
                    SharedClaim::Started(ids) => Begin::Start((!ids.is_empty()).then_some(ids)),
                    SharedClaim::InFlight => Begin::Busy,
                    SharedClaim::Done(answer) => {
                        Begin::Replay(SendResponse::decode(answer.as_slice()).map_err(|e| {
                            unavailable(via, format!("stored answer does not decode: {e}"))
                        })?)
                    }
                }
            }
        };
        Ok((begin, Held { holder }))
    }

    /// Records how the submission of `held` ended. A shared store that
    /// fails here only loses the record: the claim lapses after its lease.
    pub async fn settle(&self, tenant: &str, key: &str, held: Held, ending: Ending) {
        match self {
            Self::Local(store) => match ending {
                Ending::Answered(response) => store.succeed(tenant, key, response),
                Ending::Failed(ids) => store.fail(tenant, key, ids),
            },
            Self::Shared {
                keys, via, ttl_ms, ..
            } => {
                let outcome = match ending {
                    Ending::Answered(response) => SharedOutcome::Done(response.encode_to_vec()),
                    Ending::Failed(ids) => SharedOutcome::Failed(ids),
                };
                match keys
                    .settle(tenant, key, &held.holder, outcome, *ttl_ms)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(%tenant, %key, "idempotency key lapsed before it was settled; a retry starts over")
                    }
                    Err(reason) => {
                        tracing::warn!(%tenant, %key, %via, %reason, "could not settle an idempotency key; a retry after its lease starts over")
                    }
                }
            }
        }
    }
}

fn unavailable(via: &str, reason: String) -> IngestError {
    IngestError::KeysUnavailable {
        via: via.to_owned(),
        reason,
    }
}

/// Shared keys on the recorder's Query service.
pub struct QueryKeys {
    client: QueryClient<InterceptedService<Channel, Bearer>>,
}

impl QueryKeys {
    /// A lazily connecting client of the Query service at `addr`, sending
    /// `bearer` (`idempotency.token_file`) with every call.
    pub fn connect(
        addr: &str,
        timeout: Duration,
        bearer: Bearer,
        tls: &sluice_node::tls::TlsConfig,
    ) -> Result<Self, IngestError> {
        let key = "idempotency.query_addr";
        let channel = crate::suppression::query_channel(key, addr, timeout, tls)?;
        Ok(Self {
            client: QueryClient::with_interceptor(channel, bearer),
        })
    }
}

impl SharedKeys for QueryKeys {
    fn claim<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        holder: &'a str,
        lease_ms: u64,
    ) -> KeysFuture<'a, SharedClaim> {
        Box::pin(async move {
            let request = ClaimIdempotencyKeyRequest {
                tenant: tenant.to_owned(),
                key: key.to_owned(),
                holder: holder.to_owned(),
                lease_ms,
            };
            let reply = self.client.clone().claim_idempotency_key(request).await;
            let reply = reply
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            Ok(match reply.state() {
                State::Started => SharedClaim::Started(reply.reuse_ids),
                State::InFlight => SharedClaim::InFlight,
                State::Done => SharedClaim::Done(reply.response),
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
                SharedOutcome::Done(answer) => Outcome::Response(answer),
                SharedOutcome::Failed(ids) => Outcome::Failed(FailedIds { ids }),
            };
            let request = SettleIdempotencyKeyRequest {
                tenant: tenant.to_owned(),
                key: key.to_owned(),
                holder: holder.to_owned(),
                ttl_ms,
                outcome: Some(outcome),
            };
            let reply = self.client.clone().settle_idempotency_key(request).await;
            Ok(reply
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner()
                .settled)
        })
    }
}
