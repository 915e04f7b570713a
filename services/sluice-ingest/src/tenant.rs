//! Tenants from the configuration: authentication, sending domains,
//! suppressions and the rate quota.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::IngestError;
use crate::config::TenantConfig;
use crate::secret::SecretHash;

/// One tenant, ready to authorize submissions.
#[derive(Debug)]
pub struct Tenant {
    name: String,
    domains: HashSet<String>,
    default_pool: String,
    bounce_domain: String,
    suppressed: HashSet<String>,
    quota: u32,
    /// Shared with the tenant's next version while the quota is unchanged,
    /// so a configuration change does not hand out a fresh burst.
    limiter: Option<Arc<QuotaLimiter>>,
    paused: bool,
    traced: bool,
    smtp_dsn: bool,
    tracking: bool,
}

/// A tenant's limiter on this node: `share(quota, live nodes)` recipients
/// per second, burst of one second. Rebuilt (full) when the count of live
/// ingest nodes changes the share; kept otherwise.
#[derive(Debug)]
struct QuotaLimiter {
    quota: u32,
    current: Mutex<(u32, Arc<DefaultDirectRateLimiter>)>,
}

fn limiter_of(share: u32) -> Option<Arc<DefaultDirectRateLimiter>> {
    NonZeroU32::new(share).map(|rate| Arc::new(RateLimiter::direct(Quota::per_second(rate))))
}

impl QuotaLimiter {
    fn new(quota: u32) -> Option<Self> {
        let limiter = limiter_of(quota)?;
        Some(Self {
            quota,
            current: Mutex::new((quota, limiter)),
        })
    }

    /// The share of `live` nodes and its limiter.
    fn for_live(&self, live: u32) -> (u32, Arc<DefaultDirectRateLimiter>) {
        let share = crate::quota::share(self.quota, live);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 != share
            && let Some(limiter) = limiter_of(share)
        {
            *current = (share, limiter);
        }
        current.clone()
    }
}

impl Tenant {
    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether every submission of the tenant is traced.
    pub fn traced(&self) -> bool {
        self.traced
    }

    /// Whether mail it submits over SMTP that finally fails is reported to
    /// the submitter's MAIL FROM.
    pub fn smtp_dsn(&self) -> bool {
        self.smtp_dsn
    }

    /// Whether its submissions may ask for open and click tracking.
    pub fn tracking(&self) -> bool {
        self.tracking
    }

    /// Pool used when a submission names none.
    pub fn default_pool(&self) -> &str {
        &self.default_pool
    }

    /// Domain of VERP return paths for mail from `from_domain`.
    pub fn bounce_domain<'a>(&'a self, from_domain: &'a str) -> &'a str {
        if self.bounce_domain.is_empty() {
            from_domain
        } else {
            &self.bounce_domain
        }
    }

    /// Fails when the tenant is paused (its submissions are refused).
    pub fn check_active(&self) -> Result<(), IngestError> {
        if self.paused {
            return Err(IngestError::forbidden(
                "tenant",
                format!(
                    "tenant {} is paused; nothing was accepted. An operator resumes it with `sluice admin tenant put {} ...` without --paused",
                    self.name, self.name
                ),
            ));
        }
        Ok(())
    }

    /// Fails unless `domain` is one of the tenant's sending domains.
    pub fn check_domain(&self, field: &str, domain: &str) -> Result<(), IngestError> {
        if self.domains.contains(&domain.to_ascii_lowercase()) {
            Ok(())
        } else {
            Err(IngestError::forbidden(
                field,
                format!(
                    "domain {domain:?} is not a sending domain of tenant {}",
                    self.name
                ),
            ))
        }
    }

    /// True when `address` is on the tenant's suppression list.
    pub fn is_suppressed(&self, address: &str) -> bool {
        self.suppressed.contains(&address.to_lowercase())
    }

    /// Takes `recipients` from this node's share of the rate quota when
    /// `live_nodes` ingest nodes share it, or fails with `RateLimited`.
    pub fn take_quota(&self, recipients: usize, live_nodes: u32) -> Result<(), IngestError> {
        let Some(quota) = &self.limiter else {
            return Ok(());
        };
        let (share, limiter) = quota.for_live(live_nodes);
        let limited = || IngestError::RateLimited {
            tenant: self.name.clone(),
            quota: self.quota,
            share,
            live_nodes: live_nodes.max(1),
        };
        let n = u32::try_from(recipients.max(1)).map_err(|_| limited())?;
        let n = NonZeroU32::new(n).ok_or_else(limited)?;
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            _ => Err(limited()),
        }
    }
}

/// All tenants and their credentials.
#[derive(Debug, Default)]
pub struct Tenants {
    api_keys: Vec<(SecretHash, Arc<Tenant>)>,
    smtp_users: HashMap<String, (SecretHash, Arc<Tenant>)>,
    by_name: HashMap<String, Arc<Tenant>>,
}

impl Tenants {
    /// Builds the registry; the error names the tenant and field at fault.
    pub fn from_config(configs: &[TenantConfig]) -> Result<Self, IngestError> {
        Self::rebuild(configs, &Self::default())
    }

    /// Like [`Tenants::from_config`], keeping the rate limiter of every
    /// tenant of `previous` whose quota did not change.
    pub fn rebuild(configs: &[TenantConfig], previous: &Tenants) -> Result<Self, IngestError> {
        let mut tenants = Self::default();
        for config in configs {
            let before = previous.by_name.get(&config.name).map(Arc::as_ref);
            let tenant = Arc::new(build_tenant(config, before));
            tenants.by_name.insert(config.name.clone(), tenant.clone());
            for (i, stored) in config.api_keys.iter().enumerate() {
                let hash = SecretHash::parse(stored).map_err(|reason| {
                    IngestError::Config(format!("tenants.{}.api_keys[{i}]: {reason}", config.name))
                })?;
                tenants.api_keys.push((hash, tenant.clone()));
            }
            for user in &config.smtp_users {
                let hash = SecretHash::parse(&user.password_hash).map_err(|reason| {
                    IngestError::Config(format!(
                        "tenants.{}.smtp_users.{}: {reason}",
                        config.name, user.username
                    ))
                })?;
                tenants
                    .smtp_users
                    .insert(user.username.clone(), (hash, tenant.clone()));
            }
        }
        Ok(tenants)
    }

    /// The tenant of an `authorization` value (HTTP header or gRPC
    /// metadata) of the form `Bearer <api key>`.
    pub fn by_bearer(&self, authorization: Option<&str>) -> Result<Arc<Tenant>, IngestError> {
        let value = authorization.ok_or_else(|| {
            IngestError::Unauthenticated("missing `authorization: Bearer <api key>`".into())
        })?;
        let key = value.strip_prefix("Bearer ").ok_or_else(|| {
            IngestError::Unauthenticated("authorization must be `Bearer <api key>`".into())
        })?;
        self.by_api_key(key.trim())
    }

    /// The tenant named `name`.
    pub fn by_name(&self, name: &str) -> Option<Arc<Tenant>> {
        self.by_name.get(name).cloned()
    }

    /// The tenant owning API key `key`.
    pub fn by_api_key(&self, key: &str) -> Result<Arc<Tenant>, IngestError> {
        self.api_keys
            .iter()
            .find(|(hash, _)| hash.verify(key))
            .map(|(_, tenant)| tenant.clone())
            .ok_or_else(|| IngestError::Unauthenticated("the API key is not valid".into()))
    }

    /// The tenant of SMTP user `username` if `password` matches.
    pub fn by_smtp_login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Arc<Tenant>, IngestError> {
        let invalid = || IngestError::Unauthenticated("authentication credentials invalid".into());
        let known = self.smtp_users.get(username);
        // Every login costs one Argon2 check, whoever the user and however
        // the password is stored (`sha256$` checks take microseconds), so
        // the answer's time does not tell which usernames exist.
        if !matches!(known, Some((SecretHash::Argon2(_), _))) {
            unknown_user_hash().verify(password);
        }
        match known {
            Some((hash, tenant)) if hash.verify(password) => Ok(tenant.clone()),
            _ => Err(invalid()),
        }
    }
}

/// An Argon2 hash checked for unknown usernames (its answer is ignored).
fn unknown_user_hash() -> &'static SecretHash {
    static HASH: std::sync::OnceLock<SecretHash> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        // The result is never used: only the time the check takes.
        let stored = crate::secret::hash_password("no user has this password");
        SecretHash::parse(&stored).expect("a fresh Argon2 hash parses")
    })
}

fn build_tenant(config: &TenantConfig, previous: Option<&Tenant>) -> Tenant {
    let limiter = match previous {
        Some(p) if p.quota == config.rate_quota => p.limiter.clone(),
        _ => QuotaLimiter::new(config.rate_quota).map(Arc::new),
    };
    Tenant {
        name: config.name.clone(),
        domains: config
            .domains
            .iter()
            .map(|d| d.name.to_ascii_lowercase())
            .collect(),
        default_pool: config.default_pool.clone(),
        bounce_domain: config.bounce_domain.clone(),
        suppressed: config.suppressed.iter().map(|a| a.to_lowercase()).collect(),
        quota: config.rate_quota,
        limiter,
        paused: config.paused,
        traced: config.trace,
        smtp_dsn: config.smtp_dsn,
        tracking: config.tracking,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DomainConfig, SmtpUserConfig};
    use crate::secret::hash_secret;

    fn config(quota: u32) -> TenantConfig {
        TenantConfig {
            name: "acme".into(),
            api_keys: vec![hash_secret("k1")],
            smtp_users: vec![SmtpUserConfig {
                username: "u".into(),
                password_hash: hash_secret("p"),
            }],
            domains: vec![DomainConfig {
                name: "Acme.Example".into(),
                dkim_selector: String::new(),
                dkim_algorithm: "rsa-sha256".into(),
                dkim_private_key_file: None,
            }],
            default_pool: "shared".into(),
            rate_quota: quota,
            bounce_domain: String::new(),
            suppressed: vec!["Gone@Example.com".into()],
            paused: false,
            trace: false,
            smtp_dsn: false,
            tracking: false,
        }
    }

    #[test]
    fn credentials_resolve_to_the_tenant() {
        let tenants = Tenants::from_config(&[config(0)]).expect("builds");
        assert_eq!(tenants.by_api_key("k1").expect("key").name(), "acme");
        assert!(tenants.by_api_key("k2").is_err());
        assert!(tenants.by_smtp_login("u", "p").is_ok());
        assert!(tenants.by_smtp_login("u", "x").is_err());
    }

    #[test]
    fn domains_and_suppressions_are_case_insensitive() {
        let tenant = build_tenant(&config(0), None);
        assert!(tenant.check_domain("from", "acme.example").is_ok());
        let err = tenant
            .check_domain("from", "other.example")
            .expect_err("foreign");
        assert!(err.to_string().contains("other.example"), "{err}");
        assert!(tenant.is_suppressed("gone@example.com"));
    }

    #[test]
    fn quota_refuses_beyond_one_second_of_burst() {
        let tenant = build_tenant(&config(10), None);
        assert!(tenant.take_quota(10, 1).is_ok());
        let err = tenant.take_quota(5, 1).expect_err("burst used up");
        assert_eq!(err.http_status(), 429);
        assert!(
            tenant.take_quota(11, 1).is_err(),
            "more than the burst never fits"
        );
    }

    #[test]
    fn a_rebuild_keeps_the_used_burst_and_applies_pauses() {
        let first = Tenants::from_config(&[config(10)]).expect("builds");
        let tenant = first.by_api_key("k1").expect("key");
        assert!(tenant.take_quota(10, 1).is_ok());
        assert!(tenant.check_active().is_ok());
        let paused = TenantConfig {
            paused: true,
            ..config(10)
        };
        let second = Tenants::rebuild(&[paused], &first).expect("rebuilds");
        let tenant = second.by_api_key("k1").expect("key");
        assert!(tenant.take_quota(1, 1).is_err(), "the burst stays used");
        let err = tenant.check_active().expect_err("paused");
        assert_eq!(err.http_status(), 403);
        let raised = Tenants::rebuild(&[config(20)], &second).expect("rebuilds");
        assert!(
            raised
                .by_api_key("k1")
                .expect("key")
                .take_quota(20, 1)
                .is_ok(),
            "a new quota starts full"
        );
    }

    #[test]
    fn the_limit_is_this_nodes_share_of_live_nodes() {
        let tenant = build_tenant(&config(20), None);
        let err = tenant.take_quota(11, 2).expect_err("share of two is 10");
        assert!(err.to_string().contains("10/s of 2"), "{err}");
        assert!(tenant.take_quota(10, 2).is_ok());
        assert!(
            tenant.take_quota(1, 2).is_err(),
            "the share's burst is used"
        );
        assert!(
            tenant.take_quota(20, 1).is_ok(),
            "a node left: the whole quota, a new limiter"
        );
        assert!(tenant.take_quota(7, 3).is_ok(), "share of three is 7");
        assert!(tenant.take_quota(1, 3).is_err());
        let unlimited = build_tenant(&config(0), None);
        assert!(unlimited.take_quota(1_000, 5).is_ok());
    }

    #[test]
    fn logins_take_an_argon2_check_whether_or_not_the_user_exists() {
        use std::time::{Duration, Instant};
        let tenants = Tenants::from_config(&[config(0)]).expect("builds");
        let fastest = |user: &str| {
            (0..3)
                .map(|_| {
                    let started = Instant::now();
                    let _ = tenants.by_smtp_login(user, "wrong");
                    started.elapsed()
                })
                .min()
                .unwrap_or(Duration::ZERO)
        };
        let (unknown, known) = (fastest("nobody"), fastest("u"));
        // `u` is stored as `sha256$`: without the Argon2 check its answer
        // came a thousand times sooner than an unknown user's.
        assert!(
            known * 2 >= unknown,
            "known sha256$ user answered in {known:?}, unknown in {unknown:?}"
        );
        assert!(
            tenants.by_smtp_login("u", "p").is_ok(),
            "the right password"
        );
    }
}
