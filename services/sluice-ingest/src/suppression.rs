//! Suppressions the recorder learned from hard bounces, complaints and
//! unsubscribes, consulted for every submission in addition to the
//! tenant's configured `suppressed` list. One check per submission covers
//! all its recipients. If the source cannot answer, the submission fails
//! as unavailable (fail closed): sending to a suppressed address is worse
//! than a retried submission. See docs/ingest.md, "Suppressions".

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sluice_control_client::Bearer;
use sluice_proto::v1::CheckSuppressionsRequest;
use sluice_proto::v1::query_client::QueryClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::IngestError;
use crate::config::SuppressionsConfig;

/// Most addresses per `CheckSuppressions` call (the Query service's limit).
const MAX_PER_CALL: usize = 1_000;

/// What a [`SuppressionLookup`] returns: the suppressed addresses among
/// those asked, or why it could not tell.
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + 'a>>;

/// An in-process source of suppressions (`sluice dev` implements it on the
/// recorder's ledger). Compares addresses lowercase and returns the
/// suppressed ones as they were asked.
pub trait SuppressionLookup: Send + Sync + 'static {
    /// Which of `addresses` `tenant` has suppressed.
    fn suppressed<'a>(&'a self, tenant: &'a str, addresses: &'a [String]) -> LookupFuture<'a>;
}

/// Where ingest learns the recorder's suppressions.
#[derive(Clone, Default)]
pub enum Suppressions {
    /// Only the configured `tenants[].suppressed` lists.
    #[default]
    None,
    /// The Query service's `CheckSuppressions` (`suppressions.query_addr`).
    Query {
        client: Box<QueryClient<InterceptedService<Channel, Bearer>>>,
        addr: String,
    },
    /// An in-process lookup (the ledger of `sluice dev`).
    InProcess(Arc<dyn SuppressionLookup>),
}

impl std::fmt::Debug for Suppressions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("Suppressions::None"),
            Self::Query { addr, .. } => write!(f, "Suppressions::Query({addr})"),
            Self::InProcess(_) => f.write_str("Suppressions::InProcess"),
        }
    }
}

impl Suppressions {
    /// The source `config` names: the Query service at `query_addr`, or
    /// none when it is empty. Connects lazily (the recorder may start
    /// later); must run inside a tokio runtime.
    pub fn from_config(
        config: &SuppressionsConfig,
        tls: &sluice_node::tls::TlsConfig,
    ) -> Result<Self, IngestError> {
        let addr = config.query_addr.trim();
        if addr.is_empty() {
            return Ok(Self::None);
        }
        let timeout = config.timeout.as_duration().max(Duration::from_millis(1));
        let channel = query_channel("suppressions.query_addr", addr, timeout, tls)?;
        let bearer = query_bearer("suppressions.token_file", config.token_file.as_deref())?;
        Ok(Self::Query {
            client: Box::new(QueryClient::with_interceptor(channel, bearer)),
            addr: addr.to_owned(),
        })
    }

    /// An in-process source.
    pub fn in_process(lookup: Arc<dyn SuppressionLookup>) -> Self {
        Self::InProcess(lookup)
    }

    /// The lowercase forms of the `addresses` of `tenant` this source has
    /// suppressed; an error (fail closed) when it cannot tell.
    pub async fn check(
        &self,
        tenant: &str,
        addresses: &[String],
    ) -> Result<HashSet<String>, IngestError> {
        if addresses.is_empty() {
            return Ok(HashSet::new());
        }
        let found = match self {
            Self::None => Vec::new(),
            Self::Query { client, addr } => {
                query((**client).clone(), addr, tenant, addresses).await?
            }
            Self::InProcess(lookup) => {
                lookup
                    .suppressed(tenant, addresses)
                    .await
                    .map_err(|reason| IngestError::SuppressionsUnavailable {
                        via: "the in-process ledger".into(),
                        reason,
                    })?
            }
        };
        Ok(found.iter().map(|a| a.to_lowercase()).collect())
    }
}

/// A lazily connecting channel to the Query service at `addr` (the setting
/// `key`), each call within `timeout`; `https://` addresses use `tls`.
pub(crate) fn query_channel(
    key: &str,
    addr: &str,
    timeout: Duration,
    tls: &sluice_node::tls::TlsConfig,
) -> Result<Channel, IngestError> {
    let endpoint = sluice_node::tls::endpoint(addr, tls).map_err(|err| {
        IngestError::Config(format!(
            "{key}: {addr:?} (a URL like http://127.0.0.1:7402): {err}"
        ))
    })?;
    Ok(endpoint
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_lazy())
}

/// The token in `file` (the setting `key`), sent to the Query service as
/// `authorization: Bearer`; none when unset.
pub(crate) fn query_bearer(
    key: &str,
    file: Option<&std::path::Path>,
) -> Result<Bearer, IngestError> {
    Bearer::from_setting(key, file).map_err(IngestError::Config)
}

async fn query(
    mut client: QueryClient<InterceptedService<Channel, Bearer>>,
    addr: &str,
    tenant: &str,
    addresses: &[String],
) -> Result<Vec<String>, IngestError> {
    let mut found = Vec::new();
    for chunk in addresses.chunks(MAX_PER_CALL) {
        let request = CheckSuppressionsRequest {
            tenant: tenant.to_owned(),
            addresses: chunk.to_vec(),
        };
        let response = client.check_suppressions(request).await.map_err(|status| {
            tracing::warn!(%addr, code = ?status.code(), message = status.message(), "suppression check failed; submission refused as unavailable");
            IngestError::SuppressionsUnavailable {
                via: format!("the Query service at suppressions.query_addr {addr}"),
                reason: format!("{:?}: {}", status.code(), status.message()),
            }
        })?;
        found.extend(response.into_inner().suppressed);
    }
    Ok(found)
}
