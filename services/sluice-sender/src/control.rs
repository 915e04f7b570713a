//! The sender's configuration from control: the pool's source IPs (with
//! their EHLO names and warm-up plans), warm-up plans, site policies
//! (limits, required TLS), providers and paused tenants, laid over the
//! node's file. Pure: a function of the file and control's records.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use sluice_control_client::ClusterConfig;
use sluice_node::ConfigError;
use sluice_proto::v1 as pb;
use sluice_shaping::{IpConfig, IpLimits, Limits, PlanDay, WarmupPlan};

use crate::SenderConfig;

/// A new configuration for the dispatcher, from control.
#[derive(Debug, Clone)]
pub struct ControlUpdate {
    /// Control's revision it reflects.
    pub revision: u64,
    /// The node's configuration with control's records laid over the file.
    pub cfg: Arc<SenderConfig>,
    /// Tenants paused in control.
    pub paused: BTreeSet<String>,
    /// When each site's policy last changed ([`crate::wake`]).
    pub wakes: Vec<crate::wake::Wake>,
}

impl ControlUpdate {
    /// The update for `cluster` over the node's file `base`.
    pub fn new(base: &SenderConfig, cluster: &ClusterConfig) -> Self {
        Self {
            revision: cluster.revision,
            cfg: Arc::new(overlay(base, cluster)),
            paused: paused_tenants(cluster),
            wakes: site_changes(cluster),
        }
    }
}

/// The time each site policy last changed, where control stamped one.
pub fn site_changes(cluster: &ClusterConfig) -> Vec<crate::wake::Wake> {
    cluster
        .site_policies
        .values()
        .filter_map(|p| {
            let at = crate::fate::millis(&p.changed_at)?;
            Some(crate::wake::Wake {
                site: p.site.clone(),
                at,
            })
        })
        .collect()
}

/// What the node's file may not set when it follows control (control holds
/// it); each entry is (key, is it set).
pub fn conflicts(cfg: &SenderConfig) -> Vec<&'static str> {
    let s = &cfg.shaping;
    [
        ("shaping.ips", !s.ips.is_empty()),
        ("shaping.warmup.plans", !s.warmup.plans.is_empty()),
        ("shaping.limits.sites", !s.limits.sites.is_empty()),
        ("shaping.limits.providers", !s.limits.providers.is_empty()),
        ("shaping.limits.ips", !s.limits.ips.is_empty()),
        ("smtp.ehlo_names", !cfg.smtp.ehlo_names.is_empty()),
        (
            "smtp.require_tls_sites",
            !cfg.smtp.require_tls_sites.is_empty(),
        ),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(key, _)| key)
    .collect()
}

/// Fails when the file sets what control holds.
pub fn check_file(cfg: &SenderConfig) -> Result<(), ConfigError> {
    match conflicts(cfg).first() {
        None => Ok(()),
        Some(key) => Err(ConfigError::invalid(
            "sender",
            *key,
            "control holds this when control.addr is set; remove it from the file and set it with `sluice admin`",
        )),
    }
}

/// The node's configuration with control's records laid over `base`.
pub fn overlay(base: &SenderConfig, cluster: &ClusterConfig) -> SenderConfig {
    let mut cfg = base.clone();
    let shaping = &mut cfg.shaping;
    for plan in cluster.warmup_plans.values() {
        shaping
            .warmup
            .plans
            .insert(plan.name.clone(), warmup_plan(plan));
    }
    for ip in cluster.pool_ips(&base.pool).filter(|ip| !ip.paused) {
        let Ok(address) = ip.address.parse::<IpAddr>() else {
            tracing::warn!(address = %ip.address, "control lists a source IP that does not parse; skipped");
            continue;
        };
        let plan = Some(ip.warmup_plan.clone())
            .filter(|p| !p.is_empty() && shaping.warmup.plans.contains_key(p));
        shaping.ips.push(IpConfig {
            address,
            pool: ip.pool.clone(),
            warmup_plan: plan,
        });
        if !ip.ehlo_name.is_empty() {
            cfg.smtp.ehlo_names.insert(address, ip.ehlo_name.clone());
        }
        if ip.limits.is_some() || !ip.site_limits.is_empty() {
            let limits = IpLimits {
                default: ip.limits.as_ref().map(overrides).unwrap_or_default(),
                sites: ip
                    .site_limits
                    .iter()
                    .map(|(site, l)| (site.clone(), overrides(l)))
                    .collect(),
            };
            shaping.limits.ips.insert(address, limits);
        }
    }
    for policy in cluster.site_policies.values() {
        shaping
            .limits
            .sites
            .insert(policy.site.clone(), site_limits(policy));
        if policy.require_tls {
            cfg.smtp.require_tls_sites.push(policy.site.clone());
        }
    }
    for provider in cluster.providers.values() {
        shaping
            .limits
            .providers
            .insert(provider.name.clone(), provider_limits(provider));
    }
    cfg
}

/// Tenants paused in control: their queued mail waits like mail of tenants
/// paused by reputation.
pub fn paused_tenants(cluster: &ClusterConfig) -> BTreeSet<String> {
    cluster
        .tenants
        .values()
        .filter(|t| t.paused)
        .map(|t| t.name.clone())
        .collect()
}

fn some(n: u32) -> Option<u32> {
    (n > 0).then_some(n)
}

fn some64(n: u64) -> Option<u32> {
    (n > 0).then(|| u32::try_from(n).unwrap_or(u32::MAX))
}

fn site_limits(p: &pb::SitePolicy) -> Limits {
    Limits {
        messages_per_minute: some(p.messages_per_minute),
        messages_per_hour: some(p.messages_per_hour),
        messages_per_day: some64(p.messages_per_day),
        max_connections: some(p.max_connections),
        new_connections_per_minute: some(p.new_connections_per_minute),
        messages_per_connection: some(p.messages_per_connection),
        recipients_per_transaction: some(p.recipients_per_transaction),
        messages_per_second: some(p.messages_per_second),
        burst: some(p.burst),
    }
}

fn overrides(l: &pb::LimitOverrides) -> Limits {
    Limits {
        messages_per_second: some(l.messages_per_second),
        messages_per_minute: some(l.messages_per_minute),
        messages_per_hour: some(l.messages_per_hour),
        messages_per_day: some64(l.messages_per_day),
        burst: some(l.burst),
        max_connections: some(l.max_connections),
        new_connections_per_minute: some(l.new_connections_per_minute),
        messages_per_connection: some(l.messages_per_connection),
        recipients_per_transaction: some(l.recipients_per_transaction),
    }
}

fn provider_limits(p: &pb::Provider) -> Limits {
    Limits {
        messages_per_minute: some(p.messages_per_minute),
        messages_per_hour: some(p.messages_per_hour),
        messages_per_day: some64(p.messages_per_day),
        max_connections: some(p.max_connections),
        messages_per_second: some(p.messages_per_second),
        burst: some(p.burst),
        ..Limits::default()
    }
}

/// Control's steps name their day; days between two steps keep the caps of
/// the earlier step.
fn warmup_plan(plan: &pb::WarmupPlan) -> WarmupPlan {
    let mut days: Vec<PlanDay> = Vec::new();
    for step in &plan.steps {
        let day = PlanDay {
            hourly: some64(step.hourly_cap),
            sites: step
                .site_caps
                .iter()
                .map(|(site, cap)| (site.clone(), u32::try_from(*cap).unwrap_or(u32::MAX)))
                .collect(),
            ..PlanDay::daily(u32::try_from(step.daily_cap).unwrap_or(u32::MAX))
        };
        let upto = step.day.max(1) as usize;
        while days.len() + 1 < upto {
            let filler = days.last().cloned().unwrap_or_else(|| day.clone());
            days.push(filler);
        }
        days.push(day);
    }
    WarmupPlan { days }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        node = "s1"
        pool = "shared"
        [control]
        addr = "127.0.0.1:7090"
    "#;

    fn cluster() -> ClusterConfig {
        let mut c = ClusterConfig::default();
        let ip = |address: &str, pool: &str, plan: &str, paused: bool| pb::SourceIp {
            address: address.into(),
            pool: pool.into(),
            warmup_plan: plan.into(),
            ehlo_name: format!("mta-{address}.example"),
            paused,
            ..pb::SourceIp::default()
        };
        let limited = pb::SourceIp {
            limits: Some(pb::LimitOverrides {
                messages_per_minute: 120,
                ..Default::default()
            }),
            site_limits: [(
                "google".to_owned(),
                pb::LimitOverrides {
                    burst: 2,
                    ..Default::default()
                },
            )]
            .into(),
            ..ip("192.0.2.1", "shared", "new", false)
        };
        for ip in [
            limited,
            ip("192.0.2.2", "shared", "", true),
            ip("192.0.2.3", "other", "", false),
        ] {
            c.ips.insert(ip.address.clone(), ip);
        }
        let step = |day, daily_cap, hourly_cap| pb::WarmupStep {
            day,
            daily_cap,
            hourly_cap,
            ..Default::default()
        };
        c.warmup_plans.insert(
            "new".into(),
            pb::WarmupPlan {
                name: "new".into(),
                steps: vec![
                    pb::WarmupStep {
                        site_caps: [("google".to_owned(), 10)].into(),
                        ..step(1, 50, 0)
                    },
                    step(3, 200, 20),
                ],
            },
        );
        c.site_policies.insert(
            "google".into(),
            pb::SitePolicy {
                site: "google".into(),
                messages_per_minute: 300,
                messages_per_second: 10,
                burst: 3,
                require_tls: true,
                ..pb::SitePolicy::default()
            },
        );
        c.tenants.insert(
            "acme".into(),
            pb::Tenant {
                name: "acme".into(),
                paused: true,
                ..pb::Tenant::default()
            },
        );
        c
    }

    #[test]
    fn the_pools_enabled_ips_plans_and_policies_are_laid_over_the_file() {
        let base = SenderConfig::from_toml(FILE).expect("file");
        let cfg = overlay(&base, &cluster());
        let ips: Vec<String> = cfg
            .shaping
            .ips
            .iter()
            .map(|i| i.address.to_string())
            .collect();
        assert_eq!(ips, ["192.0.2.1"], "other pools and paused IPs stay out");
        assert_eq!(cfg.shaping.ips[0].warmup_plan.as_deref(), Some("new"));
        assert_eq!(
            cfg.ehlo_name("192.0.2.1".parse().unwrap()),
            "mta-192.0.2.1.example"
        );
        let plan = &cfg.shaping.warmup.plans["new"];
        let daily: Vec<u32> = plan.days.iter().map(|d| d.daily).collect();
        assert_eq!(daily, [50, 50, 200], "day 2 keeps day 1's caps");
        assert_eq!(plan.days[2].hourly, Some(20));
        assert_eq!(plan.days[0].sites["google"], 10, "per-site caps");
        let ip_limits = &cfg.shaping.limits.ips[&"192.0.2.1".parse().unwrap()];
        assert_eq!(ip_limits.default.messages_per_minute, Some(120));
        assert_eq!(ip_limits.sites["google"].burst, Some(2));
        assert_eq!(
            cfg.shaping.limits.sites["google"].messages_per_minute,
            Some(300)
        );
        assert_eq!(cfg.shaping.limits.sites["google"].messages_per_hour, None);
        let google = &cfg.shaping.limits.sites["google"];
        assert_eq!(
            (google.messages_per_second, google.burst),
            (Some(10), Some(3))
        );
        assert_eq!(cfg.smtp.require_tls_sites, ["google"]);
        assert_eq!(
            paused_tenants(&cluster()).into_iter().collect::<Vec<_>>(),
            ["acme"]
        );
        sluice_shaping::Engine::new(cfg.shaping).expect("the overlay compiles");
    }

    #[test]
    fn a_file_that_sets_what_control_holds_is_refused() {
        let text = format!("{FILE}\n[[shaping.ips]]\naddress = \"192.0.2.9\"\npool = \"shared\"\n");
        let err = SenderConfig::from_toml(&text).expect_err("conflict");
        assert!(err.to_string().contains("shaping.ips"), "{err}");
        assert!(err.to_string().contains("sluice admin"), "{err}");
    }
}
