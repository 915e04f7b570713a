//! `sluice dev`'s ingest and sender follow its embedded control, like nodes
//! of a cluster do. The dev file's tenants, pools, source IPs, warm-up plans,
//! site limits and providers are put into control when control does not have
//! them yet (the first start); from then on control holds them and
//! `sluice admin` changes them while dev runs. A node whose file part uses
//! something control cannot express keeps its file configuration, and the
//! log says which setting kept it there.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sluice_control_client::{ClusterConfig, ControlSection};
use sluice_proto::v1 as pb;
use sluice_shaping::Limits;

use sluice_ingest::IngestConfig;
use sluice_sender::SenderConfig;

/// Makes the nodes of `cfg` follow the control service at `control`, whose
/// admin token is in `token_file` (`None`: the config named its own
/// credentials, so dev has no token and the nodes keep their files).
pub(super) async fn follow_control(
    (ingest_cfg, sender_cfg): (&mut IngestConfig, &mut SenderConfig),
    control: SocketAddr,
    token_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let Some(token_file) = token_file else {
        tracing::info!(
            "the config names control credentials of its own: dev's ingest and sender keep their file configuration"
        );
        return Ok(());
    };
    let ingest = ingest_blocker(ingest_cfg);
    let sender = sender_blocker(sender_cfg);
    for (node, why) in [("ingest", &ingest), ("sender", &sender)] {
        if let Some(why) = why {
            tracing::info!(
                node,
                "dev's {node} keeps its file configuration: {why} cannot be expressed in control"
            );
        }
    }
    if ingest.is_some() && sender.is_some() {
        return Ok(());
    }
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read {}", token_file.display()))?;
    let addr = format!("http://{control}");
    let mut client = connect(&addr, token.trim()).await?;
    let snapshot = client
        .get_snapshot(pb::GetSnapshotRequest {})
        .await
        .context("control's snapshot")?
        .into_inner();
    let have = ClusterConfig::from_snapshot(snapshot);
    let records = Records::of(
        (ingest_cfg, ingest.is_none()),
        (sender_cfg, sender.is_none()),
    );
    let added = records.put_missing(&mut client, &have).await?;
    let section = ControlSection {
        addr,
        token_file: Some(token_file),
        ..ControlSection::default()
    };
    if ingest.is_none() {
        ingest_cfg.tenants.clear();
        ingest_cfg.control = section.clone();
    }
    if sender.is_none() {
        let (s, smtp) = (&mut sender_cfg.shaping, &mut sender_cfg.smtp);
        s.ips.clear();
        s.warmup.plans.clear();
        s.limits.sites.clear();
        s.limits.providers.clear();
        smtp.ehlo_names.clear();
        smtp.require_tls_sites.clear();
        sender_cfg.control = section;
    }
    tracing::info!(
        added,
        ingest = ingest.is_none(),
        sender = sender.is_none(),
        "dev's nodes follow control: tenants, IPs, plans and limits are records there (`sluice admin`); records of the dev file that control lacked were added"
    );
    Ok(())
}

async fn connect(addr: &str, token: &str) -> anyhow::Result<sluice_control_client::Client> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sluice_control_client::client(addr, Some(token)).await {
            Ok(client) => return Ok(client),
            Err(err) if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("dev's control at {addr} did not answer: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// What keeps ingest on its file, if anything.
fn ingest_blocker(ingest: &IngestConfig) -> Option<String> {
    ingest
        .control
        .enabled()
        .then(|| "ingest.control.addr is set (it follows that control)".into())
}

/// What keeps the sender on its file, if anything.
fn sender_blocker(sender: &SenderConfig) -> Option<String> {
    if sender.control.enabled() {
        return Some("sender.control.addr is set (it follows that control)".into());
    }
    let limits = &sender.shaping.limits;
    // Per-IP limits are part of an IP's record: they need the IP.
    let orphan = limits
        .ips
        .keys()
        .find(|a| !sender.shaping.ips.iter().any(|ip| ip.address == **a));
    if let Some(address) = orphan {
        return Some(format!(
            "sender.shaping.limits.ips.\"{address}\" (an IP not in shaping.ips)"
        ));
    }
    limits
        .providers
        .iter()
        .find(|(_, l)| !provider_only(l))
        .map(|(name, _)| format!("sender.shaping.limits.providers.{name}"))
}

/// True when `l` sets only what a control provider record holds.
fn provider_only(l: &Limits) -> bool {
    let kept = Limits {
        messages_per_minute: l.messages_per_minute,
        messages_per_hour: l.messages_per_hour,
        messages_per_day: l.messages_per_day,
        max_connections: l.max_connections,
        messages_per_second: l.messages_per_second,
        burst: l.burst,
        ..Limits::default()
    };
    kept == *l
}

/// The dev file's records, in the order control's references need.
#[derive(Default)]
struct Records {
    pools: BTreeSet<String>,
    plans: Vec<pb::WarmupPlan>,
    ips: Vec<pb::SourceIp>,
    sites: Vec<pb::SitePolicy>,
    providers: Vec<pb::Provider>,
    tenants: Vec<pb::Tenant>,
    /// The tenants' `suppressed` lists, added with their tenant.
    suppressions: Vec<pb::Suppression>,
}

impl Records {
    fn of((i, ingest): (&IngestConfig, bool), (s, sender): (&SenderConfig, bool)) -> Self {
        let mut r = Self::default();
        if ingest {
            r.pools.extend(i.pools.iter().cloned());
            r.tenants = i.tenants.iter().map(tenant).collect();
            r.suppressions = i.tenants.iter().flat_map(suppressions).collect();
            r.pools
                .extend(r.tenants.iter().map(|t| t.default_pool.clone()));
        }
        if sender {
            r.pools.insert(s.pool.clone());
            r.plans = s
                .shaping
                .warmup
                .plans
                .iter()
                .map(|(n, p)| plan(n, p))
                .collect();
            r.ips = s.shaping.ips.iter().map(|ip| source_ip(ip, s)).collect();
            r.pools.extend(r.ips.iter().map(|ip| ip.pool.clone()));
            r.sites = site_policies(s);
            r.providers = s
                .shaping
                .limits
                .providers
                .iter()
                .map(|(n, l)| provider(n, l))
                .collect();
        }
        r
    }

    /// Puts every record `have` lacks; returns how many.
    async fn put_missing(
        &self,
        c: &mut sluice_control_client::Client,
        have: &ClusterConfig,
    ) -> anyhow::Result<usize> {
        let mut added = 0;
        for name in self.pools.iter().filter(|p| !have.pools.contains_key(*p)) {
            let pool = pb::Pool {
                name: name.clone(),
                description: "from the sluice dev configuration".into(),
            };
            c.put_pool(pool).await.context("seeding a pool")?;
            added += 1;
        }
        for p in self
            .plans
            .iter()
            .filter(|p| !have.warmup_plans.contains_key(&p.name))
        {
            c.put_warmup_plan(p.clone())
                .await
                .context("seeding a warm-up plan")?;
            added += 1;
        }
        for ip in self
            .ips
            .iter()
            .filter(|ip| !have.ips.contains_key(&ip.address))
        {
            c.put_ip(ip.clone()).await.context("seeding a source IP")?;
            added += 1;
        }
        for s in self
            .sites
            .iter()
            .filter(|s| !have.site_policies.contains_key(&s.site))
        {
            c.put_site_policy(s.clone())
                .await
                .context("seeding a site policy")?;
            added += 1;
        }
        for p in self
            .providers
            .iter()
            .filter(|p| !have.providers.contains_key(&p.name))
        {
            c.put_provider(p.clone())
                .await
                .context("seeding a provider")?;
            added += 1;
        }
        for t in self
            .tenants
            .iter()
            .filter(|t| !have.tenants.contains_key(&t.name))
        {
            c.put_tenant(t.clone())
                .await
                .with_context(|| format!("seeding tenant {}", t.name))?;
            added += 1;
            for s in self.suppressions.iter().filter(|s| s.tenant == t.name) {
                c.add_suppression(s.clone())
                    .await
                    .with_context(|| format!("seeding tenant {}'s suppressions", t.name))?;
            }
        }
        Ok(added)
    }
}

fn tenant(t: &sluice_ingest::config::TenantConfig) -> pb::Tenant {
    let dkim_keys = t
        .domains
        .iter()
        .filter(|d| !d.dkim_selector.is_empty())
        .filter_map(|d| {
            Some(pb::DkimKey {
                domain: d.name.clone(),
                selector: d.dkim_selector.clone(),
                algorithm: d.dkim_algorithm.clone(),
                key_ref: d.dkim_private_key_file.as_ref()?.display().to_string(),
            })
        })
        .collect();
    pb::Tenant {
        name: t.name.clone(),
        sending_domains: t.domains.iter().map(|d| d.name.clone()).collect(),
        default_pool: t.default_pool.clone(),
        rate_quota: t.rate_quota,
        paused: t.paused,
        trace: t.trace,
        smtp_dsn: t.smtp_dsn,
        tracking: t.tracking,
        api_key_hashes: t.api_keys.clone(),
        smtp_users: t
            .smtp_users
            .iter()
            .map(|u| pb::SmtpUser {
                username: u.username.clone(),
                password_hash: u.password_hash.clone(),
            })
            .collect(),
        dkim_keys,
        bounce_domain: t.bounce_domain.clone(),
        // Registered through control only (`sluice admin webhook`).
        webhooks: Vec::new(),
    }
}

/// A tenant's `suppressed` list as control records (in dev: the ledger's
/// suppression list, which ingest checks).
fn suppressions(t: &sluice_ingest::config::TenantConfig) -> Vec<pb::Suppression> {
    t.suppressed
        .iter()
        .map(|address| pb::Suppression {
            tenant: t.name.clone(),
            address: address.clone(),
            reason: "manual".into(),
            created_at: None,
        })
        .collect()
}

fn plan(name: &str, p: &sluice_shaping::WarmupPlan) -> pb::WarmupPlan {
    let steps = p
        .days
        .iter()
        .enumerate()
        .map(|(i, d)| pb::WarmupStep {
            day: i as u32 + 1,
            daily_cap: u64::from(d.daily),
            hourly_cap: d.hourly.map_or(0, u64::from),
            site_caps: d
                .sites
                .iter()
                .map(|(site, cap)| (site.clone(), u64::from(*cap)))
                .collect(),
        })
        .collect();
    pb::WarmupPlan {
        name: name.to_owned(),
        steps,
    }
}

fn source_ip(ip: &sluice_shaping::IpConfig, s: &SenderConfig) -> pb::SourceIp {
    pb::SourceIp {
        address: ip.address.to_string(),
        pool: ip.pool.clone(),
        warmup_plan: ip.warmup_plan.clone().unwrap_or_default(),
        ehlo_name: s
            .smtp
            .ehlo_names
            .get(&ip.address)
            .cloned()
            .unwrap_or_default(),
        limits: s
            .shaping
            .limits
            .ips
            .get(&ip.address)
            .map(|l| overrides(&l.default)),
        site_limits: s
            .shaping
            .limits
            .ips
            .get(&ip.address)
            .map(|l| {
                l.sites
                    .iter()
                    .map(|(n, l)| (n.clone(), overrides(l)))
                    .collect()
            })
            .unwrap_or_default(),
        ..pb::SourceIp::default()
    }
}

/// A limits layer of the file as control's per-IP overrides.
fn overrides(l: &Limits) -> pb::LimitOverrides {
    pb::LimitOverrides {
        messages_per_second: l.messages_per_second.unwrap_or(0),
        messages_per_minute: l.messages_per_minute.unwrap_or(0),
        messages_per_hour: l.messages_per_hour.unwrap_or(0),
        messages_per_day: l.messages_per_day.map_or(0, u64::from),
        burst: l.burst.unwrap_or(0),
        max_connections: l.max_connections.unwrap_or(0),
        new_connections_per_minute: l.new_connections_per_minute.unwrap_or(0),
        messages_per_connection: l.messages_per_connection.unwrap_or(0),
        recipients_per_transaction: l.recipients_per_transaction.unwrap_or(0),
    }
}

fn site_policies(s: &SenderConfig) -> Vec<pb::SitePolicy> {
    let mut names: BTreeSet<&String> = s.shaping.limits.sites.keys().collect();
    names.extend(&s.smtp.require_tls_sites);
    names
        .into_iter()
        .map(|name| {
            let l = s
                .shaping
                .limits
                .sites
                .get(name)
                .cloned()
                .unwrap_or_default();
            pb::SitePolicy {
                site: name.clone(),
                messages_per_minute: l.messages_per_minute.unwrap_or(0),
                messages_per_hour: l.messages_per_hour.unwrap_or(0),
                messages_per_day: l.messages_per_day.map_or(0, u64::from),
                max_connections: l.max_connections.unwrap_or(0),
                new_connections_per_minute: l.new_connections_per_minute.unwrap_or(0),
                messages_per_connection: l.messages_per_connection.unwrap_or(0),
                recipients_per_transaction: l.recipients_per_transaction.unwrap_or(0),
                require_tls: s.smtp.require_tls_sites.contains(name),
                messages_per_second: l.messages_per_second.unwrap_or(0),
                burst: l.burst.unwrap_or(0),
                changed_at: None,
            }
        })
        .collect()
}

fn provider(name: &str, l: &Limits) -> pb::Provider {
    pb::Provider {
        name: name.to_owned(),
        messages_per_minute: l.messages_per_minute.unwrap_or(0),
        messages_per_hour: l.messages_per_hour.unwrap_or(0),
        messages_per_day: l.messages_per_day.map_or(0, u64::from),
        max_connections: l.max_connections.unwrap_or(0),
        messages_per_second: l.messages_per_second.unwrap_or(0),
        burst: l.burst.unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::DevConfig;

    #[test]
    fn the_default_dev_configuration_follows_control_entirely() {
        let cfg = DevConfig::from_toml("").expect("defaults");
        assert_eq!(ingest_blocker(&cfg.ingest), None);
        assert_eq!(sender_blocker(&cfg.sender), None);
        let records = Records::of((&cfg.ingest, true), (&cfg.sender, true));
        assert_eq!(records.tenants[0].name, "dev");
        assert_eq!(
            records.tenants[0].api_key_hashes,
            cfg.ingest.tenants[0].api_keys
        );
        assert!(records.pools.contains("default"));
        assert_eq!(records.ips[0].address, "0.0.0.0");
    }

    #[test]
    fn settings_control_cannot_hold_keep_a_node_on_its_file() {
        let text = "[sender.shaping.limits.ips.\"192.0.2.1\".default]\nmessages_per_minute = 60\n\
                    [sender.shaping.limits.sites.slowmail]\nmessages_per_minute = 60\nburst = 5\n\
                    [[ingest.tenants]]\nname = \"t\"\ndefault_pool = \"default\"\nsuppressed = [\"a@b.example\"]\n";
        let cfg = DevConfig::from_toml(text).expect("parses");
        let why = sender_blocker(&cfg.sender).expect("limits of an unknown IP");
        assert!(why.contains("192.0.2.1"), "{why}");
        // Bursts and per-second limits are site policy fields now.
        let sites = site_policies(&cfg.sender);
        assert_eq!((sites[0].site.as_str(), sites[0].burst), ("slowmail", 5));
        // A tenant's `suppressed` list goes into control (the ledger's list).
        assert_eq!(ingest_blocker(&cfg.ingest), None);
        let records = Records::of((&cfg.ingest, true), (&cfg.sender, false));
        let listed: Vec<(&str, &str)> = records
            .suppressions
            .iter()
            .map(|s| (s.tenant.as_str(), s.address.as_str()))
            .collect();
        assert_eq!(listed, [("t", "a@b.example")]);
    }

    #[test]
    fn site_limits_and_required_tls_become_policies() {
        let text = "[sender.shaping.limits.sites.gmail]\nmessages_per_minute = 60\nmax_connections = 3\n\
                    [sender.smtp]\nrequire_tls_sites = [\"gmail\", \"yahoo\"]\n";
        let cfg = DevConfig::from_toml(text).expect("parses");
        let sites = site_policies(&cfg.sender);
        let names: Vec<&str> = sites.iter().map(|s| s.site.as_str()).collect();
        assert_eq!(names, ["gmail", "yahoo"]);
        assert_eq!(sites[0].messages_per_minute, 60);
        assert!(sites[0].require_tls && sites[1].require_tls);
        assert_eq!(sites[1].messages_per_minute, 0, "no limit: only TLS");
    }

    #[test]
    fn per_ip_limits_and_per_site_warmup_caps_become_records() {
        let text = "[[sender.shaping.ips]]\naddress = \"192.0.2.7\"\npool = \"default\"\n\
                    warmup_plan = \"new\"\n\
                    [sender.shaping.limits.ips.\"192.0.2.7\".default]\nmessages_per_minute = 90\n\
                    [sender.shaping.limits.ips.\"192.0.2.7\".sites.gmail]\nburst = 2\n\
                    [[sender.shaping.warmup.plans.new.days]]\ndaily = 100\nsites = { gmail = 30 }\n";
        let cfg = DevConfig::from_toml(text).expect("parses");
        assert_eq!(sender_blocker(&cfg.sender), None, "control holds all of it");
        let records = Records::of((&cfg.ingest, false), (&cfg.sender, true));
        let ip = records
            .ips
            .iter()
            .find(|ip| ip.address == "192.0.2.7")
            .expect("the IP");
        assert_eq!(ip.limits.as_ref().map(|l| l.messages_per_minute), Some(90));
        assert_eq!(ip.site_limits["gmail"].burst, 2);
        let plan = records
            .plans
            .iter()
            .find(|p| p.name == "new")
            .expect("plan");
        assert_eq!(plan.steps[0].site_caps["gmail"], 30);
    }
}
