//! Who may call the Control service: bearer tokens checked against the
//! configured credentials (`ControlConfig::credentials`) before any work.
//!
//! A missing or unknown token is `UNAUTHENTICATED`; a known token whose role
//! does not allow the call is `PERMISSION_DENIED`, naming the role needed.
//! Both are decided before the request is read, so neither answer says
//! anything about the records.

use sluice_node::auth::{Credentials, bearer_token};
use tonic::Request;

use crate::ControlError;
use crate::config::{ControlConfig, Role};

/// The message of every `UNAUTHENTICATED` answer.
pub const UNAUTHENTICATED: &str = "a valid control token is required";

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Lists, GetSnapshot and Watch: any role.
    Read,
    /// PutIp and PutTenant: admin, or operator when only `paused` changes
    /// (the service checks that against the stored record).
    Pause,
    /// Adding, importing and removing suppressions: admin, operator, or a
    /// node (ingest enters its tenants' own entries through these calls;
    /// a node can already suppress any address by publishing an event).
    Suppress,
    /// Changing one webhook of a tenant: admin, operator, or a node (the
    /// dispatcher disables a webhook whose posts failed for its whole
    /// retry window; ingest enters its tenants' own webhooks).
    Webhook,
    /// Every other change: admin.
    Admin,
}

/// The credentials a service checks; no entries and `allow_unauthenticated`
/// serves everyone as admin.
pub(crate) struct Auth {
    credentials: Credentials,
}

impl Auth {
    /// The credentials of `config`. Fails when there are none and
    /// `allow_unauthenticated` is not set, or when a hash does not parse.
    pub(crate) fn from_config(config: &ControlConfig) -> Result<Self, ControlError> {
        let credentials =
            Credentials::new(&config.credentials, config.allow_unauthenticated, "control")
                .map_err(ControlError::Config)?;
        Ok(Self { credentials })
    }

    /// The role of the request's bearer token, if it allows `need`.
    pub(crate) fn authorize<T>(
        &self,
        request: &Request<T>,
        need: Need,
    ) -> Result<Role, ControlError> {
        if self.credentials.is_open() {
            return Ok(Role::Admin);
        }
        let header = request.metadata().get("authorization");
        let token = bearer_token(header.and_then(|v| v.to_str().ok()))
            .ok_or(ControlError::Unauthenticated)?;
        let entry = self
            .credentials
            .holder(token)
            .ok_or(ControlError::Unauthenticated)?;
        let allowed = match need {
            Need::Read => true,
            Need::Pause => matches!(entry.role, Role::Admin | Role::Operator),
            Need::Suppress | Need::Webhook => {
                matches!(entry.role, Role::Admin | Role::Operator | Role::Node)
            }
            Need::Admin => entry.role == Role::Admin,
        };
        if !allowed {
            let needed = match need {
                Need::Pause => "the admin role (or operator, to change only `paused`)",
                _ => "the admin role",
            };
            return Err(ControlError::PermissionDenied(format!(
                "this call needs {needed}; the token of `{}` has role {}",
                entry.name,
                entry.role.as_str()
            )));
        }
        Ok(entry.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Credential;
    use sluice_node::secret::hash_secret;

    fn request(token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    fn auth() -> Auth {
        let credential = |name: &str, role, token: &str| Credential {
            name: name.into(),
            role,
            token_hash: hash_secret(token),
        };
        let config = ControlConfig {
            credentials: vec![
                credential("root", Role::Admin, "a"),
                credential("ops", Role::Operator, "o"),
                credential("sender-1", Role::Node, "n"),
            ],
            ..ControlConfig::default()
        };
        Auth::from_config(&config).expect("auth")
    }

    #[test]
    fn tokens_grant_their_role_only() {
        let auth = auth();
        assert!(matches!(
            auth.authorize(&request(None), Need::Read),
            Err(ControlError::Unauthenticated)
        ));
        assert!(matches!(
            auth.authorize(&request(Some("wrong")), Need::Read),
            Err(ControlError::Unauthenticated)
        ));
        assert_eq!(
            auth.authorize(&request(Some("n")), Need::Read).unwrap(),
            Role::Node
        );
        let denied = auth
            .authorize(&request(Some("n")), Need::Pause)
            .unwrap_err();
        assert!(denied.to_string().contains("admin role"), "{denied}");
        assert_eq!(
            auth.authorize(&request(Some("o")), Need::Pause).unwrap(),
            Role::Operator
        );
        assert!(auth.authorize(&request(Some("o")), Need::Admin).is_err());
        // Ingest enters its tenants' suppressions with a node token.
        assert_eq!(
            auth.authorize(&request(Some("n")), Need::Suppress).unwrap(),
            Role::Node
        );
        assert!(auth.authorize(&request(None), Need::Suppress).is_err());
        assert_eq!(
            auth.authorize(&request(Some("a")), Need::Admin).unwrap(),
            Role::Admin
        );
    }

    #[test]
    fn no_credentials_needs_the_explicit_switch() {
        let err = Auth::from_config(&ControlConfig::default())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("allow_unauthenticated"), "{err}");
        let open = ControlConfig {
            allow_unauthenticated: true,
            ..ControlConfig::default()
        };
        let auth = Auth::from_config(&open).expect("open");
        assert_eq!(
            auth.authorize(&request(None), Need::Admin).unwrap(),
            Role::Admin
        );
    }
}
