//! Tenants from the configuration: authentication, sending domains,
//! suppressions and the rate quota.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;

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
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    paused: bool,
}

impl Tenant {
    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.name
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

    /// Takes `recipients` from the rate quota or fails with `RateLimited`.
    pub fn take_quota(&self, recipients: usize) -> Result<(), IngestError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let limited = || IngestError::RateLimited {
            tenant: self.name.clone(),
            quota: self.quota,
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
        match self.smtp_users.get(username) {
            Some((hash, tenant)) if hash.verify(password) => Ok(tenant.clone()),
            _ => Err(IngestError::Unauthenticated(
                "authentication credentials invalid".into(),
            )),
        }
    }
}

fn build_tenant(config: &TenantConfig, previous: Option<&Tenant>) -> Tenant {
    let limiter = match previous {
        Some(p) if p.quota == config.rate_quota => p.limiter.clone(),
        _ => NonZeroU32::new(config.rate_quota)
            .map(|rate| Arc::new(RateLimiter::direct(Quota::per_second(rate)))),
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
        assert!(tenant.take_quota(10).is_ok());
        let err = tenant.take_quota(5).expect_err("burst used up");
        assert_eq!(err.http_status(), 429);
        assert!(
            tenant.take_quota(11).is_err(),
            "more than the burst never fits"
        );
    }

    #[test]
    fn a_rebuild_keeps_the_used_burst_and_applies_pauses() {
        let first = Tenants::from_config(&[config(10)]).expect("builds");
        let tenant = first.by_api_key("k1").expect("key");
        assert!(tenant.take_quota(10).is_ok());
        assert!(tenant.check_active().is_ok());
        let paused = TenantConfig {
            paused: true,
            ..config(10)
        };
        let second = Tenants::rebuild(&[paused], &first).expect("rebuilds");
        let tenant = second.by_api_key("k1").expect("key");
        assert!(tenant.take_quota(1).is_err(), "the burst stays used");
        let err = tenant.check_active().expect_err("paused");
        assert_eq!(err.http_status(), 403);
        let raised = Tenants::rebuild(&[config(20)], &second).expect("rebuilds");
        assert!(
            raised.by_api_key("k1").expect("key").take_quota(20).is_ok(),
            "a new quota starts full"
        );
    }
}
