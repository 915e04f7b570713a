//! Who may call the Query service, and on whose data.
//!
//! Every call carries `authorization: Bearer <token>`: either a token of the
//! configured `credentials` (roles admin, operator, node; shared with
//! control through `sluice_node::auth`), or a tenant's API key, verified
//! against the hashes control holds (`control.addr`) or the file's
//! `tenants`. The caller is known before the request is decoded further or
//! the ledger is read; what each caller may call is [`Caller::may`], and a
//! tenant sees only its own data (the Query service checks the tenant a
//! request names, and the tenant of a message it reads).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_node::auth::{Credentials, Role, bearer_token};
use sluice_node::secret::SecretHash;
use tokio::sync::watch;
use tonic::metadata::MetadataMap;

use crate::{RecorderConfig, RecorderError};

/// The message of every `UNAUTHENTICATED` answer.
pub const UNAUTHENTICATED: &str = "a valid token is required: send `authorization: Bearer \
     <token>` with a Query credential's token or the tenant's API key (sluice status/stats: \
     --token or SLUICE_QUERY_TOKEN)";

/// A tenant whose API keys may read its own data (the file's `tenants`,
/// used when the recorder does not follow control).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantKeysConfig {
    /// Tenant name, as ingest writes it into every event.
    pub name: String,
    /// Hashed API keys of the tenant (the `api_keys` of its ingest
    /// configuration: `sluice hash-secret` output).
    #[serde(default)]
    pub api_keys: Vec<String>,
}

/// The API keys of every tenant, as hashes.
#[derive(Default)]
pub struct TenantKeys(Vec<(SecretHash, String)>);

impl TenantKeys {
    /// The file's `tenants`; the error names the entry at fault.
    pub fn from_config(tenants: &[TenantKeysConfig]) -> Result<Self, (String, String)> {
        let mut keys = Vec::new();
        for (i, t) in tenants.iter().enumerate() {
            if t.name.is_empty() {
                return Err((format!("tenants[{i}].name"), "must not be empty".into()));
            }
            for (j, stored) in t.api_keys.iter().enumerate() {
                let hash = SecretHash::parse(stored)
                    .map_err(|reason| (format!("tenants[{i}].api_keys[{j}]"), reason))?;
                keys.push((hash, t.name.clone()));
            }
        }
        Ok(Self(keys))
    }

    /// The tenants control publishes (a hash that does not parse is
    /// skipped with a warning: control validates them when they are put).
    pub fn from_cluster(cluster: &sluice_control_client::ClusterConfig) -> Self {
        let mut keys = Vec::new();
        for tenant in cluster.tenants.values() {
            for stored in &tenant.api_key_hashes {
                match SecretHash::parse(stored) {
                    Ok(hash) => keys.push((hash, tenant.name.clone())),
                    Err(reason) => {
                        tracing::warn!(tenant = %tenant.name, %reason, "an API key hash from control does not parse; skipped")
                    }
                }
            }
        }
        Self(keys)
    }

    fn tenant(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(hash, _)| hash.verify(key))
            .map(|(_, name)| name.as_str())
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A configured credential (or anyone, when the service is open).
    Staff(Role),
    /// A tenant's API key: that tenant's data only.
    Tenant(String),
}

/// The calls of the Query service, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `GetMessage`.
    GetMessage,
    /// `GetStats`.
    GetStats,
    /// `GetReputation`.
    GetReputation,
    /// `CheckSuppressions`.
    CheckSuppressions,
    /// `ClaimIdempotencyKey` and `SettleIdempotencyKey`.
    IdempotencyKeys,
    /// `IngestHeartbeat`.
    IngestHeartbeat,
    /// `ListWebhookDeliveries`.
    WebhookDeliveries,
}

impl Caller {
    /// Whether this caller may make `call` at all (a tenant then sees only
    /// its own data: the service checks that).
    pub fn may(&self, call: Call) -> Result<(), RecorderError> {
        let allowed = match (self, call) {
            (Caller::Staff(Role::Admin), _) => true,
            (Caller::Staff(Role::Operator), c) => {
                !matches!(c, Call::IdempotencyKeys | Call::IngestHeartbeat)
            }
            (Caller::Staff(Role::Node), c) => matches!(
                c,
                Call::GetReputation
                    | Call::CheckSuppressions
                    | Call::IdempotencyKeys
                    | Call::IngestHeartbeat
            ),
            (Caller::Tenant(_), c) => matches!(
                c,
                Call::GetMessage
                    | Call::GetStats
                    | Call::CheckSuppressions
                    | Call::WebhookDeliveries
            ),
        };
        if allowed {
            return Ok(());
        }
        let who = match self {
            Caller::Staff(role) => format!("a token with role {}", role.as_str()),
            Caller::Tenant(_) => "a tenant's API key".to_owned(),
        };
        let needed = match call {
            Call::GetMessage | Call::GetStats | Call::WebhookDeliveries => {
                "admin, operator or the tenant's API key"
            }
            Call::GetReputation => "admin, operator or node",
            Call::CheckSuppressions => "admin, operator, node or the tenant's API key",
            Call::IdempotencyKeys | Call::IngestHeartbeat => "admin or node",
        };
        Err(RecorderError::PermissionDenied(format!(
            "{call:?} needs {needed}; {who} may not call it"
        )))
    }

    /// Fails unless this caller may see `tenant`'s data (staff may see
    /// every tenant's).
    pub fn may_see(&self, tenant: &str) -> Result<(), RecorderError> {
        match self {
            Caller::Tenant(own) if own != tenant => Err(RecorderError::PermissionDenied(format!(
                "a tenant's API key reads only its own tenant's data; this request names \
                 another tenant (the key belongs to `{own}`)"
            ))),
            _ => Ok(()),
        }
    }
}

/// The Query service's credentials and the tenants' API keys.
pub struct QueryAuth {
    credentials: Credentials,
    tenants: watch::Sender<Arc<TenantKeys>>,
}

impl QueryAuth {
    /// The credentials and tenants of `config`. Fails when there are no
    /// credentials and `allow_unauthenticated` is not set, or when a hash
    /// does not parse. With `control.addr`, the tenants come later
    /// ([`QueryAuth::set_tenants`]).
    pub fn from_config(config: &RecorderConfig) -> Result<Self, RecorderError> {
        let credentials = Credentials::new(
            &config.credentials,
            config.allow_unauthenticated,
            "the recorder's Query service",
        )
        .map_err(RecorderError::Config)?;
        let tenants = TenantKeys::from_config(&config.tenants)
            .map_err(|(key, reason)| RecorderError::Config(format!("{key}: {reason}")))?;
        Ok(Self {
            credentials,
            tenants: watch::Sender::new(Arc::new(tenants)),
        })
    }

    /// Serves everyone as admin: for in-process services and tests.
    pub fn open() -> Self {
        Self {
            credentials: Credentials::new(&[], true, "an in-process Query service")
                .unwrap_or_else(|_| unreachable!("an open service needs no credentials")),
            tenants: watch::Sender::new(Arc::default()),
        }
    }

    /// Replaces the tenants' API keys (from control).
    pub fn set_tenants(&self, keys: TenantKeys) {
        self.tenants.send_replace(Arc::new(keys));
    }

    /// Who sent the request with `metadata`: UNAUTHENTICATED without a
    /// token, or with one that is neither a credential's nor an API key.
    pub fn caller(&self, metadata: &MetadataMap) -> Result<Caller, RecorderError> {
        if self.credentials.is_open() {
            return Ok(Caller::Staff(Role::Admin));
        }
        let header = metadata.get("authorization").and_then(|v| v.to_str().ok());
        let token = bearer_token(header).ok_or(RecorderError::Unauthenticated)?;
        if let Some(holder) = self.credentials.holder(token) {
            return Ok(Caller::Staff(holder.role));
        }
        let tenants = self.tenants.borrow().clone();
        tenants
            .tenant(token)
            .map(|t| Caller::Tenant(t.to_owned()))
            .ok_or(RecorderError::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_node::auth::Credential;
    use sluice_node::secret::hash_secret;

    fn metadata(token: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(t) = token {
            m.insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        m
    }

    fn auth() -> QueryAuth {
        let credential = |name: &str, role, token: &str| Credential {
            name: name.into(),
            role,
            token_hash: hash_secret(token),
        };
        let config = RecorderConfig {
            credentials: vec![
                credential("root", Role::Admin, "a"),
                credential("ops", Role::Operator, "o"),
                credential("ingest-1", Role::Node, "n"),
            ],
            tenants: vec![TenantKeysConfig {
                name: "acme".into(),
                api_keys: vec![hash_secret("acme-key")],
            }],
            ..RecorderConfig::default()
        };
        QueryAuth::from_config(&config).expect("auth")
    }

    #[test]
    fn tokens_and_api_keys_name_the_caller() {
        let auth = auth();
        let caller = |t| auth.caller(&metadata(t));
        assert!(matches!(caller(None), Err(RecorderError::Unauthenticated)));
        assert!(matches!(
            caller(Some("wrong")),
            Err(RecorderError::Unauthenticated)
        ));
        assert_eq!(caller(Some("n")).unwrap(), Caller::Staff(Role::Node));
        assert_eq!(
            caller(Some("acme-key")).unwrap(),
            Caller::Tenant("acme".into())
        );
        auth.set_tenants(TenantKeys::default());
        assert!(caller(Some("acme-key")).is_err(), "keys replaced");
    }

    #[test]
    fn roles_allow_their_calls_only() {
        use Call::*;
        let node = Caller::Staff(Role::Node);
        let ops = Caller::Staff(Role::Operator);
        let tenant = Caller::Tenant("acme".into());
        for call in [
            GetReputation,
            CheckSuppressions,
            IdempotencyKeys,
            IngestHeartbeat,
        ] {
            assert!(node.may(call).is_ok(), "{call:?}");
        }
        assert!(node.may(GetStats).is_err() && node.may(GetMessage).is_err());
        assert!(ops.may(GetStats).is_ok() && ops.may(IdempotencyKeys).is_err());
        assert!(tenant.may(GetMessage).is_ok() && tenant.may(GetReputation).is_err());
        let denied = tenant.may(IdempotencyKeys).unwrap_err().to_string();
        assert!(denied.contains("admin or node"), "{denied}");
        assert!(ops.may(IngestHeartbeat).is_err() && tenant.may(IngestHeartbeat).is_err());
        assert!(tenant.may_see("acme").is_ok() && tenant.may_see("other").is_err());
        assert!(ops.may_see("other").is_ok());
    }

    #[test]
    fn no_credentials_needs_the_explicit_switch() {
        let err = QueryAuth::from_config(&RecorderConfig::default())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("allow_unauthenticated"), "{err}");
        let open = QueryAuth::open();
        assert_eq!(
            open.caller(&metadata(None)).unwrap(),
            Caller::Staff(Role::Admin)
        );
    }
}
