//! The demo's scenario: four simulated providers with tight per-source-IP
//! limits, four source IPs (two of them warming up), and the `sluice dev`
//! configuration that points the sender at the simulator.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

/// One simulated provider and the demo's traffic to it.
#[derive(Debug, Clone, Copy)]
pub struct Provider {
    /// Name in the simulator, the site and the provider of the sender's rules.
    pub name: &'static str,
    /// Which real provider's deferral replies the simulator gives.
    pub style: &'static str,
    /// Loopback address the simulator listens on (port 0).
    pub listen_ip: &'static str,
    /// Recipient domains it accepts mail for.
    pub domains: &'static [&'static str],
    /// Percent of the demo's recipients that go to it.
    pub share: u64,
    /// A local part the provider refuses for good, and the simulator field
    /// that makes it so: every [`BOUNCE_EVERY`]-th recipient of the provider.
    pub bouncer: Option<(&'static str, &'static str)>,
    /// Seconds the provider greylists a new (source IP, sender, recipient).
    pub greylist_secs: u32,
    /// Share of messages answered `451 4.3.0` at the end of DATA.
    pub temp_failure_rate: f64,
    /// The simulator's limits per source IP.
    pub connections: u32,
    pub per_connection: u32,
    pub per_minute: u32,
}

impl Provider {
    /// The sender's per-minute limit: inside the simulator's strict sliding
    /// window with room for the burst (docs/simulator.md).
    pub fn sender_per_minute(&self) -> u32 {
        self.per_minute * 9 / 10 - BURST
    }
}

/// The sender's burst on every site.
pub const BURST: u32 = 5;
/// Every this many recipients of a provider with a bouncer, one is the bouncer.
pub const BOUNCE_EVERY: u64 = 100;

pub const PROVIDERS: [Provider; 4] = [
    Provider {
        name: "gmail",
        style: "gmail",
        listen_ip: "127.0.0.2",
        domains: &["gmail.test", "googlemail.test"],
        share: 38,
        bouncer: Some(("nobody", "unknown_users")),
        greylist_secs: 0,
        temp_failure_rate: 0.005,
        connections: 4,
        per_connection: 100,
        per_minute: 3000,
    },
    Provider {
        name: "yahoo",
        style: "yahoo",
        listen_ip: "127.0.0.3",
        domains: &["yahoo.test", "aol.test"],
        share: 29,
        bouncer: Some(("abandoned", "mailbox_full_permanent")),
        greylist_secs: 0,
        temp_failure_rate: 0.005,
        connections: 3,
        per_connection: 50,
        per_minute: 2400,
    },
    Provider {
        name: "outlook",
        style: "outlook",
        listen_ip: "127.0.0.4",
        domains: &["outlook.test", "hotmail.test"],
        share: 29,
        bouncer: Some(("ghost", "unknown_users")),
        greylist_secs: 0,
        temp_failure_rate: 0.0,
        connections: 3,
        per_connection: 20,
        per_minute: 2400,
    },
    Provider {
        name: "smallco",
        style: "generic",
        listen_ip: "127.0.0.5",
        domains: &["smallco.test"],
        share: 4,
        bouncer: None,
        greylist_secs: 2,
        temp_failure_rate: 0.0,
        connections: 3,
        per_connection: 10,
        per_minute: 1200,
    },
];

/// Source IPs without a warm-up plan.
pub const WARMED_IPS: [&str; 2] = ["127.0.0.20", "127.0.0.21"];
/// Source IPs on the demo's warm-up plan.
pub const WARMING_IPS: [&str; 2] = ["127.0.0.22", "127.0.0.23"];
/// Name of the demo's warm-up plan.
pub const PLAN_NAME: &str = "demo";
/// The sender's default share of a warming IP's daily cap one site may take.
pub const SITE_SHARE_PERCENT: u32 = 60;

/// Every source IP, warmed first.
pub fn source_ips() -> Vec<&'static str> {
    WARMED_IPS
        .iter()
        .chain(WARMING_IPS.iter())
        .copied()
        .collect()
}

/// The demo's warm-up plan: daily caps by warm-up day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub daily: Vec<u32>,
    pub site_share_percent: u32,
}

impl Plan {
    /// Day 1 lets a warming IP take about 4 % of the run, so the cap binds
    /// at any `--messages`; later days double.
    pub fn for_messages(messages: u64) -> Plan {
        let day1 = u32::try_from(messages / 25).unwrap_or(u32::MAX).max(20);
        Plan {
            name: PLAN_NAME.to_owned(),
            daily: vec![day1, day1.saturating_mul(2), day1.saturating_mul(4)],
            site_share_percent: SITE_SHARE_PERCENT,
        }
    }

    /// The daily cap on warm-up day `day` (1-based); `None` once warmed.
    pub fn cap(&self, day: u32) -> Option<u32> {
        self.daily.get(day.checked_sub(1)? as usize).copied()
    }

    /// The most one site may take of a day's cap (as the engine computes it).
    pub fn site_cap(&self, daily: u32) -> u32 {
        (u64::from(daily) * u64::from(self.site_share_percent) / 100).max(1) as u32
    }
}

/// The provider and address of the demo's `i`-th recipient: providers in
/// proportion to their share, unknown or abandoned mailboxes now and then.
pub fn recipient(i: u64) -> (usize, String) {
    let total: u64 = PROVIDERS.iter().map(|p| p.share).sum();
    let (block, mut slot) = (i / total, i % total);
    for (n, p) in PROVIDERS.iter().enumerate() {
        if slot < p.share {
            let k = block * p.share + slot;
            let domain = p.domains[(k % p.domains.len() as u64) as usize];
            let local = match p.bouncer {
                Some((bouncer, _)) if k % BOUNCE_EVERY == BOUNCE_EVERY / 2 => bouncer.to_owned(),
                _ => format!("user{k}"),
            };
            return (n, format!("{local}@{domain}"));
        }
        slot -= p.share;
    }
    unreachable!("slot is below the total share")
}

/// The simulator's scenario.
pub fn sim_toml() -> String {
    let mut out = String::from("seed = 2026\n");
    for p in PROVIDERS {
        let domains: Vec<String> = p.domains.iter().map(|d| format!("\"{d}\"")).collect();
        let _ = write!(
            out,
            "\n[[provider]]\nname = \"{}\"\nstyle = \"{}\"\nlisten = \"{}:0\"\ndomains = [{}]\n\
             greylist_secs = {}\ntemp_failure_rate = {}\n",
            p.name,
            p.style,
            p.listen_ip,
            domains.join(", "),
            p.greylist_secs,
            p.temp_failure_rate,
        );
        if let Some((local, field)) = p.bouncer {
            let _ = writeln!(out, "{field} = [\"{local}\"]");
        }
        let _ = write!(
            out,
            "[provider.limits]\nconnections_per_ip = {}\nmessages_per_connection = {}\n\
             messages_per_minute = {}\n",
            p.connections, p.per_connection, p.per_minute
        );
    }
    out
}

/// The `sluice dev` configuration: fresh listeners, the demo tenant's
/// hashed key, and a sender routed to the simulator.
pub fn dev_toml(
    data_dir: &Path,
    key_hash: &str,
    sim: &[(String, SocketAddr)],
    plan: &Plan,
) -> String {
    let dir = data_dir.display().to_string().replace('\\', "\\\\");
    let mut out = format!(
        r#"data_dir = "{dir}"

[control]
listen = "127.0.0.1:0"

[ingest.listen]
grpc = "127.0.0.1:0"
http = "127.0.0.1:0"
smtp_submission = ""
smtp_implicit_tls = ""

[[ingest.tenants]]
name = "dev"
api_keys = ["{key_hash}"]
default_pool = "default"
domains = [{{ name = "example.com" }}, {{ name = "sluice.test" }}]

[recorder]
query_listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:0"
[inbound.http]
listen = "127.0.0.1:0"

# smallco greylists every first attempt on purpose: that deferral rate says
# nothing about the IPs' reputation, so it must not slow their paths.
[recorder.reputation.thresholds]
hold_deferral = 0.9
slow_deferral = 0.95
"#
    );
    out.push_str(SENDER_COMMON);
    sender_routes(&mut out, sim);
    sender_shaping(&mut out, sim, plan);
    out
}

/// Sender settings that do not depend on the run.
const SENDER_COMMON: &str = r#"
[sender]
dns = false

[sender.kafka]
commit_interval = "200ms"

# Any free port: the demo must not collide with a running `sluice dev`.
[sender.metrics]
listen = "127.0.0.1:0"

[sender.smtp]
ehlo_name = "demo.sluice.test"
connect_timeout = "5s"
command_timeout = "10s"
data_timeout = "10s"
idle_timeout = "2s"

[sender.queues]
max_in_flight = 6000
max_per_site = 1500
overflow_delay = "1s"

[sender.shaping.retry]
first_delay = "1s"
multiplier = 2.0
max_delay = "4s"
max_age = "10m"
jitter_percent = 10
tiers = ["1s", "5s"]

# The simulator greylists for seconds, not the minutes of the built-in rule.
[[sender.shaping.replies.rules]]
name = "demo-greylisting"
code = "^4"
text = "(?i)greylist"
action = "retry"
retry_after = "2s"
"#;

fn sender_routes(out: &mut String, sim: &[(String, SocketAddr)]) {
    out.push_str("\n[sender.routes]\n");
    for p in PROVIDERS {
        let Some((_, addr)) = sim.iter().find(|(name, _)| name == p.name) else {
            continue;
        };
        for d in p.domains {
            let _ = writeln!(out, "\"{d}\" = [\"{addr}\"]");
        }
    }
}

fn sender_shaping(out: &mut String, sim: &[(String, SocketAddr)], plan: &Plan) {
    for ip in WARMED_IPS {
        let _ = write!(
            out,
            "\n[[sender.shaping.ips]]\naddress = \"{ip}\"\npool = \"default\"\n"
        );
    }
    for ip in WARMING_IPS {
        let _ = write!(
            out,
            "\n[[sender.shaping.ips]]\naddress = \"{ip}\"\npool = \"default\"\nwarmup_plan = \"{}\"\n",
            plan.name
        );
    }
    for (name, addr) in sim {
        let _ = write!(
            out,
            "\n[[sender.shaping.sites.rules]]\npattern = \"{}\"\nsite = \"{name}\"\nprovider = \"{name}\"\n",
            addr.ip()
        );
    }
    for p in PROVIDERS {
        let _ = write!(
            out,
            "\n[sender.shaping.limits.sites.\"{}\"]\nmessages_per_minute = {}\nburst = {BURST}\n\
             max_connections = {}\nmessages_per_connection = {}\nnew_connections_per_minute = 600\n",
            p.name,
            p.sender_per_minute(),
            p.connections,
            p.per_connection
        );
    }
    let days: Vec<String> = plan
        .daily
        .iter()
        .map(|d| format!("{{ daily = {d} }}"))
        .collect();
    let _ = write!(
        out,
        "\n[sender.shaping.warmup]\nmax_site_share_percent = {}\n\n[sender.shaping.warmup.plans.{}]\ndays = [{}]\n",
        plan.site_share_percent,
        plan.name,
        days.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_follow_the_shares_and_bounce_now_and_then() {
        let mut per = [0u64; PROVIDERS.len()];
        let mut bouncers = 0;
        for i in 0..10_000 {
            let (n, addr) = recipient(i);
            per[n] += 1;
            let p = PROVIDERS[n];
            assert!(p.domains.iter().any(|d| addr.ends_with(&format!("@{d}"))));
            if p.bouncer
                .is_some_and(|(b, _)| addr.starts_with(&format!("{b}@")))
            {
                bouncers += 1;
            }
        }
        for (n, p) in PROVIDERS.iter().enumerate() {
            assert_eq!(per[n], p.share * 100, "{}", p.name);
        }
        assert_eq!(bouncers, 96, "1 % of the providers with a bouncer");
        assert_ne!(recipient(1).1, recipient(101).1, "addresses are unique");
    }

    #[test]
    fn the_simulator_scenario_parses() {
        let s = sluice_sim::Scenario::parse(&sim_toml()).expect("scenario");
        assert_eq!(s.providers.len(), PROVIDERS.len());
    }

    #[test]
    fn the_dev_config_parses_with_the_demo_sender() {
        let sim: Vec<(String, SocketAddr)> = PROVIDERS
            .iter()
            .map(|p| {
                (
                    p.name.to_owned(),
                    format!("{}:2525", p.listen_ip).parse().unwrap(),
                )
            })
            .collect();
        let plan = Plan::for_messages(50_000);
        let key = sluice_ingest::hash_secret("k");
        let text = dev_toml(Path::new("/tmp/demo"), &key, &sim, &plan);
        let cfg = crate::dev::DevConfig::from_toml(&text).expect("dev config");
        assert!(!cfg.sender.dns);
        assert_eq!(cfg.sender.shaping.ips.len(), 4);
        assert_eq!(cfg.sender.shaping.warmup.plans["demo"].days[0].daily, 2000);
        assert_eq!(cfg.ingest.tenants.len(), 1);
    }

    #[test]
    fn the_plan_scales_with_the_run_and_caps_sites() {
        let plan = Plan::for_messages(2000);
        assert_eq!(plan.cap(1), Some(80));
        assert_eq!(plan.cap(4), None);
        assert_eq!(plan.site_cap(80), 48);
        assert_eq!(Plan::for_messages(10).cap(1), Some(20));
    }
}
