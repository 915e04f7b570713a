//! Bearer-token credentials of the gRPC services (control, the recorder's
//! Query): who holds a token, its role, and its hash from `sluice
//! hash-secret`. Each service decides what a role may call; this module
//! parses the configured credentials and finds the one a token belongs to.
//!
//! A token arrives as `authorization: Bearer <token>` metadata and is checked
//! before the request is looked at. Every configured hash is tried, so the
//! time taken does not say which one matched.

use serde::{Deserialize, Serialize};

use crate::secret::SecretHash;

/// One token and the role it grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Who holds the token (unique; for logs).
    pub name: String,
    /// `admin`, `operator` or `node`; what each may call is the service's
    /// (see its documentation).
    pub role: Role,
    /// The token hashed by `sluice hash-secret` (`sha256$<salt>$<digest>`;
    /// not the `--password` form, which is too slow to check on every call).
    pub token_hash: String,
}

/// What a token may do; each service maps roles to its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every call.
    Admin,
    /// Reads, and the few changes an operator makes (control: pausing).
    Operator,
    /// What a node of the cluster needs to call.
    Node,
}

impl Role {
    /// Lower-case name, as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Node => "node",
        }
    }
}

/// Parses a configured token hash: the `sha256$salt$digest` form only.
pub fn token_hash(stored: &str) -> Result<SecretHash, String> {
    match SecretHash::parse(stored)? {
        hash @ SecretHash::Sha256 { .. } => Ok(hash),
        SecretHash::Argon2(_) => Err(
            "use the `sha256$...` form of `sluice hash-secret` (without --password): a token \
             is checked on every call"
                .into(),
        ),
    }
}

/// Checks a configured list: every name given once and not empty, every
/// hash parseable. The error is the key at fault and the reason.
pub fn check(credentials: &[Credential]) -> Result<(), (String, String)> {
    let mut names = std::collections::HashSet::new();
    for (i, c) in credentials.iter().enumerate() {
        if c.name.is_empty() || !names.insert(c.name.as_str()) {
            return Err((
                format!("credentials[{i}].name"),
                "empty or given twice; every credential needs its own name".into(),
            ));
        }
        token_hash(&c.token_hash)
            .map_err(|reason| (format!("credentials[{i}].token_hash"), reason))?;
    }
    Ok(())
}

/// The token of an `authorization` header value `Bearer <token>`, if any.
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    header
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whose token it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder<'a> {
    /// The credential's name.
    pub name: &'a str,
    /// Its role.
    pub role: Role,
}

struct Entry {
    name: String,
    role: Role,
    hash: SecretHash,
}

/// The parsed credentials of a service. With none and
/// `allow_unauthenticated`, the service is open: [`Credentials::is_open`].
pub struct Credentials {
    entries: Vec<Entry>,
    open: bool,
}

impl Credentials {
    /// Parses `list`. Fails when a hash does not parse, or when the list is
    /// empty and `allow_unauthenticated` is not set; when it is set and the
    /// list is empty, logs a warning naming `service`.
    pub fn new(
        list: &[Credential],
        allow_unauthenticated: bool,
        service: &str,
    ) -> Result<Self, String> {
        let mut entries = Vec::with_capacity(list.len());
        for (i, c) in list.iter().enumerate() {
            let hash = token_hash(&c.token_hash)
                .map_err(|reason| format!("credentials[{i}].token_hash: {reason}"))?;
            entries.push(Entry {
                name: c.name.clone(),
                role: c.role,
                hash,
            });
        }
        if entries.is_empty() && !allow_unauthenticated {
            return Err(
                "credentials: none configured. Add [[credentials]] entries (name, role, \
                 token_hash from `sluice hash-secret`), or set allow_unauthenticated = true \
                 to serve every caller without a token"
                    .into(),
            );
        }
        let open = entries.is_empty();
        if open {
            tracing::warn!(
                "{service} serves EVERY caller WITHOUT A TOKEN (allow_unauthenticated = true and \
                 no credentials): anyone who reaches its port is treated as admin"
            );
        }
        Ok(Self { entries, open })
    }

    /// True when every caller is served as admin (no credentials, and
    /// `allow_unauthenticated`).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The credential `token` belongs to. Every entry is checked.
    pub fn holder(&self, token: &str) -> Option<Holder<'_>> {
        let found =
            self.entries.iter().fold(
                None,
                |found, e| if e.hash.verify(token) { Some(e) } else { found },
            );
        found.map(|e| Holder {
            name: &e.name,
            role: e.role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::hash_secret;

    fn credential(name: &str, role: Role, token: &str) -> Credential {
        Credential {
            name: name.into(),
            role,
            token_hash: hash_secret(token),
        }
    }

    #[test]
    fn tokens_find_their_credential() {
        let list = [
            credential("root", Role::Admin, "a"),
            credential("n1", Role::Node, "n"),
        ];
        let creds = Credentials::new(&list, false, "test").expect("credentials");
        assert!(!creds.is_open());
        assert_eq!(creds.holder("n").map(|h| h.role), Some(Role::Node));
        assert_eq!(creds.holder("a").map(|h| h.name), Some("root"));
        assert!(creds.holder("x").is_none());
        assert_eq!(bearer_token(Some("Bearer  t ")), Some("t"));
        assert_eq!(bearer_token(Some("Basic t")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(None), None);
    }

    #[test]
    fn none_needs_the_switch_and_bad_entries_are_named() {
        let err = Credentials::new(&[], false, "test").err().expect("refused");
        assert!(err.contains("allow_unauthenticated"), "{err}");
        assert!(Credentials::new(&[], true, "test").expect("open").is_open());
        let twice = [
            credential("a", Role::Admin, "1"),
            credential("a", Role::Node, "2"),
        ];
        assert_eq!(check(&twice).unwrap_err().0, "credentials[1].name");
        let mut slow = credential("a", Role::Admin, "1");
        slow.token_hash = crate::secret::hash_password("1");
        assert_eq!(check(&[slow]).unwrap_err().0, "credentials[0].token_hash");
    }
}
