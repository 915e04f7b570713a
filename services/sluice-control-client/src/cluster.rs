//! The configuration a node holds: every record of control, keyed by name.

use std::collections::BTreeMap;

use sluice_proto::v1::config_change::Change;
use sluice_proto::v1::{
    ConfigChange, ConfigSnapshot, Pool, Provider, RecordKind, SitePolicy, SourceIp, Tenant,
    WarmupPlan,
};

/// Control's records as of `revision` (suppressions are not part of it:
/// they are looked up per submission, not held by nodes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterConfig {
    /// The revision of the last change applied.
    pub revision: u64,
    /// Pools by name.
    pub pools: BTreeMap<String, Pool>,
    /// Source IPs by address (canonical text).
    pub ips: BTreeMap<String, SourceIp>,
    /// Warm-up plans by name.
    pub warmup_plans: BTreeMap<String, WarmupPlan>,
    /// Site policies by site name.
    pub site_policies: BTreeMap<String, SitePolicy>,
    /// Tenants by name.
    pub tenants: BTreeMap<String, Tenant>,
    /// Providers by name.
    pub providers: BTreeMap<String, Provider>,
}

fn keyed<T>(items: Vec<T>, key: impl Fn(&T) -> String) -> BTreeMap<String, T> {
    items.into_iter().map(|item| (key(&item), item)).collect()
}

impl ClusterConfig {
    /// The configuration a snapshot describes.
    pub fn from_snapshot(snapshot: ConfigSnapshot) -> Self {
        Self {
            revision: snapshot.revision,
            pools: keyed(snapshot.pools, |p| p.name.clone()),
            ips: keyed(snapshot.ips, |ip| ip.address.clone()),
            warmup_plans: keyed(snapshot.warmup_plans, |p| p.name.clone()),
            site_policies: keyed(snapshot.site_policies, |s| s.site.clone()),
            tenants: keyed(snapshot.tenants, |t| t.name.clone()),
            providers: keyed(snapshot.providers, |p| p.name.clone()),
        }
    }

    /// Applies one change. Each change carries the whole record, so applying
    /// a change again (a snapshot taken while it was being written, then the
    /// same change from Watch) leaves the same configuration. Returns false
    /// when the change concerns nothing a node holds (suppressions, or a
    /// change kind this build does not know).
    pub fn apply(&mut self, change: &ConfigChange) -> bool {
        self.revision = self.revision.max(change.revision);
        let Some(change) = &change.change else {
            return false;
        };
        match change {
            Change::Pool(p) => put(&mut self.pools, &p.name, p),
            Change::Ip(ip) => put(&mut self.ips, &ip.address, ip),
            Change::WarmupPlan(p) => put(&mut self.warmup_plans, &p.name, p),
            Change::SitePolicy(s) => put(&mut self.site_policies, &s.site, s),
            Change::Tenant(t) => put(&mut self.tenants, &t.name, t),
            Change::Provider(p) => put(&mut self.providers, &p.name, p),
            Change::Deleted(d) => return self.delete(d.kind(), &d.name),
            Change::SuppressionAdded(_) | Change::SuppressionRemoved(_) => return false,
        }
        true
    }

    fn delete(&mut self, kind: RecordKind, name: &str) -> bool {
        match kind {
            RecordKind::Pool => self.pools.remove(name).is_some(),
            RecordKind::Ip => self.ips.remove(name).is_some(),
            RecordKind::WarmupPlan => self.warmup_plans.remove(name).is_some(),
            RecordKind::SitePolicy => self.site_policies.remove(name).is_some(),
            RecordKind::Tenant => self.tenants.remove(name).is_some(),
            RecordKind::Provider => self.providers.remove(name).is_some(),
            RecordKind::Unspecified => false,
        }
    }

    /// The source IPs of `pool`, enabled or not, ordered by address text.
    pub fn pool_ips<'a>(&'a self, pool: &'a str) -> impl Iterator<Item = &'a SourceIp> + 'a {
        self.ips.values().filter(move |ip| ip.pool == pool)
    }
}

fn put<T: Clone>(map: &mut BTreeMap<String, T>, key: &str, value: &T) {
    map.insert(key.to_owned(), value.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::v1::Deleted;

    fn change(revision: u64, change: Change) -> ConfigChange {
        ConfigChange {
            revision,
            change: Some(change),
        }
    }

    fn tenant(name: &str, paused: bool) -> Tenant {
        Tenant {
            name: name.into(),
            paused,
            ..Tenant::default()
        }
    }

    #[test]
    fn changes_apply_in_order_and_replays_change_nothing() {
        let snapshot = ConfigSnapshot {
            revision: 4,
            tenants: vec![tenant("acme", false)],
            ..ConfigSnapshot::default()
        };
        let mut config = ClusterConfig::from_snapshot(snapshot);
        let paused = change(5, Change::Tenant(tenant("acme", true)));
        assert!(config.apply(&paused));
        let once = config.clone();
        assert!(config.apply(&paused));
        assert_eq!(config, once, "a change applied twice is applied once");
        assert!(config.tenants["acme"].paused);
        assert_eq!(config.revision, 5);
    }

    #[test]
    fn deletes_remove_the_record_and_suppressions_are_not_held() {
        let mut config = ClusterConfig::default();
        config.apply(&change(1, Change::Tenant(tenant("acme", false))));
        let gone = Deleted {
            kind: RecordKind::Tenant.into(),
            name: "acme".into(),
        };
        assert!(config.apply(&change(2, Change::Deleted(gone.clone()))));
        assert!(config.tenants.is_empty());
        assert!(
            !config.apply(&change(3, Change::Deleted(gone))),
            "already gone"
        );
        let s = Change::SuppressionAdded(Default::default());
        assert!(!config.apply(&change(4, s)));
        assert_eq!(config.revision, 4);
    }

    #[test]
    fn a_revision_never_goes_back() {
        let mut config = ClusterConfig {
            revision: 9,
            ..ClusterConfig::default()
        };
        config.apply(&change(7, Change::Tenant(tenant("late", false))));
        assert_eq!(config.revision, 9);
        assert!(config.tenants.contains_key("late"));
    }
}
