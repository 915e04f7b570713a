//! What an ingest node checks submissions against: the tenants (credentials,
//! domains, quotas, pauses), their DKIM keys and the pools. It comes from the
//! node's file, or from control; a change from control builds a new
//! directory that replaces the old one whole, so a submission sees one
//! consistent version from start to end.

use std::collections::HashSet;

use sluice_control_client::ClusterConfig;
use sluice_proto::v1 as pb;

use crate::IngestError;
use crate::config::{DomainConfig, IngestConfig, SmtpUserConfig, TenantConfig};
use crate::dkim::{self, DkimSigners, KeyCache};
use crate::tenant::Tenants;

/// Tenants, keys and pools of one configuration version.
#[derive(Debug)]
pub struct Directory {
    tenants: Tenants,
    signers: DkimSigners,
    pools: HashSet<String>,
    configs: Vec<TenantConfig>,
    revision: u64,
}

impl Directory {
    /// The directory of the node's file; any error stops the node.
    pub fn from_config(config: &IngestConfig) -> Result<Self, IngestError> {
        Ok(Self {
            tenants: Tenants::from_config(&config.tenants)?,
            signers: DkimSigners::from_config(&config.tenants, config.limits.signing_threads)?,
            pools: config.pools.iter().cloned().collect(),
            configs: config.tenants.clone(),
            revision: 0,
        })
    }

    /// The directory of control's configuration. A tenant whose DKIM key
    /// cannot be loaded keeps its previous version (or stays out when it is
    /// new), with an error in the log: one bad key file must not stop every
    /// other change from applying.
    pub fn from_control(cluster: &ClusterConfig, previous: &Directory) -> Self {
        let mut configs = Vec::new();
        let mut keys = KeyCache::new();
        for tenant in cluster.tenants.values() {
            let config = tenant_config(tenant);
            match dkim::tenant_keys(&config, previous.signers.keys()) {
                Ok(loaded) => {
                    keys.extend(loaded);
                    configs.push(config);
                }
                Err(err) => keep_previous(previous, &config.name, &err, &mut configs, &mut keys),
            }
        }
        let tenants = match Tenants::rebuild(&configs, &previous.tenants) {
            Ok(tenants) => tenants,
            Err(err) => {
                tracing::error!(%err, revision = cluster.revision, "control's tenants do not build; keeping the previous ones");
                return previous.clone_with_revision(cluster.revision);
            }
        };
        Self {
            tenants,
            signers: previous.signers.with_keys(keys),
            pools: cluster.pools.keys().cloned().collect(),
            configs,
            revision: cluster.revision,
        }
    }

    fn clone_with_revision(&self, revision: u64) -> Self {
        Self {
            tenants: Tenants::rebuild(&self.configs, &self.tenants).unwrap_or_default(),
            signers: self.signers.with_keys(self.signers.keys().clone()),
            pools: self.pools.clone(),
            configs: self.configs.clone(),
            revision,
        }
    }

    /// The tenants, for authentication at the front doors.
    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    /// The DKIM keys and the signing threads.
    pub fn signers(&self) -> &DkimSigners {
        &self.signers
    }

    /// The pools submissions may name.
    pub fn pools(&self) -> &HashSet<String> {
        &self.pools
    }

    /// Control's revision this directory reflects (0: from the file).
    pub fn revision(&self) -> u64 {
        self.revision
    }
}

fn keep_previous(
    previous: &Directory,
    name: &str,
    err: &IngestError,
    configs: &mut Vec<TenantConfig>,
    keys: &mut KeyCache,
) {
    let Some(old) = previous.configs.iter().find(|c| c.name == name) else {
        tracing::error!(tenant = %name, %err, "tenant left out: its DKIM key cannot be loaded on this node; fix the key file or the tenant's key_ref in control");
        return;
    };
    tracing::error!(tenant = %name, %err, "tenant change not applied: its DKIM key cannot be loaded on this node; the previous version stays in use");
    for domain in &old.domains {
        let name = domain.name.to_ascii_lowercase();
        if let Some(key) = previous.signers.keys().get(&name) {
            keys.insert(name, key.clone());
        }
    }
    configs.push(old.clone());
}

/// A control tenant in the shape of the file's `[[tenants]]`.
pub fn tenant_config(tenant: &pb::Tenant) -> TenantConfig {
    let domains = tenant
        .sending_domains
        .iter()
        .map(|name| {
            let key = tenant
                .dkim_keys
                .iter()
                .find(|k| k.domain.eq_ignore_ascii_case(name));
            DomainConfig {
                name: name.clone(),
                dkim_selector: key.map(|k| k.selector.clone()).unwrap_or_default(),
                dkim_algorithm: key
                    .map(|k| k.algorithm.clone())
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| "rsa-sha256".into()),
                dkim_private_key_file: key.map(|k| k.key_ref.clone().into()),
            }
        })
        .collect();
    TenantConfig {
        name: tenant.name.clone(),
        api_keys: tenant.api_key_hashes.clone(),
        smtp_users: tenant
            .smtp_users
            .iter()
            .map(|u| SmtpUserConfig {
                username: u.username.clone(),
                password_hash: u.password_hash.clone(),
            })
            .collect(),
        domains,
        default_pool: tenant.default_pool.clone(),
        rate_quota: tenant.rate_quota,
        bounce_domain: tenant.bounce_domain.clone(),
        suppressed: Vec::new(),
        paused: tenant.paused,
        trace: tenant.trace,
        smtp_dsn: tenant.smtp_dsn,
        tracking: tenant.tracking,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::hash_secret;

    fn control_tenant(key_ref: &str, paused: bool) -> pb::Tenant {
        pb::Tenant {
            name: "acme".into(),
            sending_domains: vec!["acme.example".into()],
            default_pool: "shared".into(),
            api_key_hashes: vec![hash_secret("k1")],
            dkim_keys: vec![pb::DkimKey {
                domain: "ACME.example".into(),
                selector: "s1".into(),
                algorithm: String::new(),
                key_ref: key_ref.into(),
            }],
            paused,
            ..pb::Tenant::default()
        }
    }

    fn cluster(tenant: pb::Tenant, revision: u64) -> ClusterConfig {
        let mut c = ClusterConfig {
            revision,
            ..ClusterConfig::default()
        };
        c.tenants.insert(tenant.name.clone(), tenant);
        c.pools.insert("shared".into(), pb::Pool::default());
        c
    }

    fn empty() -> Directory {
        Directory {
            tenants: Tenants::default(),
            signers: DkimSigners::from_config(&[], 1).expect("no keys"),
            pools: HashSet::new(),
            configs: Vec::new(),
            revision: 0,
        }
    }

    #[test]
    fn control_tenants_map_to_file_tenants() {
        let config = tenant_config(&control_tenant("/keys/acme.pem", true));
        assert_eq!(config.domains[0].dkim_selector, "s1");
        assert_eq!(config.domains[0].dkim_algorithm, "rsa-sha256");
        assert_eq!(
            config.domains[0].dkim_private_key_file.as_deref(),
            Some(std::path::Path::new("/keys/acme.pem"))
        );
        assert!(config.paused);
    }

    #[test]
    fn a_tenant_whose_key_cannot_load_keeps_its_previous_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("acme.pem");
        std::fs::write(&key, ED25519_PEM).expect("write key");
        let mut good = control_tenant(key.to_str().expect("utf8"), false);
        good.dkim_keys[0].algorithm = "ed25519-sha256".into();
        let first = Directory::from_control(&cluster(good.clone(), 1), &empty());
        assert!(first.tenants().by_api_key("k1").is_ok());
        assert!(first.signers().keys().contains_key("acme.example"));
        let mut broken = good;
        broken.dkim_keys[0].key_ref = dir.path().join("missing.pem").display().to_string();
        broken.paused = true;
        let second = Directory::from_control(&cluster(broken.clone(), 2), &first);
        let tenant = second.tenants().by_api_key("k1").expect("still there");
        assert!(tenant.check_active().is_ok(), "the previous version stays");
        assert!(second.signers().keys().contains_key("acme.example"));
        assert_eq!(second.revision(), 2);
        let fresh = Directory::from_control(&cluster(broken, 3), &empty());
        assert!(
            fresh.tenants().by_api_key("k1").is_err(),
            "a new tenant with a bad key stays out"
        );
    }

    // A throwaway Ed25519 key (PKCS#8), generated for this test only.
    const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEHPB/bfMSSzIe9zYc0nQxjdzHV/BcO+YGCMZhRFzEk7\n-----END PRIVATE KEY-----\n";
}
