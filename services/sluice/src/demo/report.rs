//! The demo's findings: rows per provider and per source IP, and the verdict.
//! Pure: the simulator's report (the independent witness), the event tally,
//! the message ids ingest accepted and the warm-up plan in; rows out.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use sluice_proto::v1::EventKind;
use sluice_sim::Report;

use super::scenario::{Plan, Provider};
use super::tally::{Counts, Tally};

/// What the report is computed from.
pub struct Inputs<'a> {
    pub sim: &'a Report,
    pub tally: &'a Tally,
    /// Message ids ingest answered with (suppressed recipients excluded).
    pub accepted: &'a [String],
    pub providers: &'a [Provider],
    /// Every source IP of the sender, and those on `plan`.
    pub ips: &'a [&'a str],
    pub warming: &'a [&'a str],
    pub plan: &'a Plan,
}

/// One provider's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRow {
    pub name: String,
    /// Messages the simulated provider accepted.
    pub delivered: u64,
    /// Deferred attempts and bounces, from the events.
    pub events: Counts,
    /// Highest messages in a 60 s window from one source IP.
    pub peak_per_minute: u32,
    pub sender_limit: u32,
    pub isp_limit: Option<u32>,
    /// Connections opened over the run (all IPs) and the per-IP limit.
    pub connections: u64,
    pub connection_limit: Option<u32>,
    pub violations: u64,
}

/// A source IP's peak at one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePeak {
    pub site: String,
    pub peak_per_minute: u32,
    pub sender_limit: u32,
    pub isp_limit: Option<u32>,
}

/// A warming IP's cap check on its latest sending day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmupCheck {
    pub day: u32,
    pub cap: Option<u32>,
    /// Attempts that day (from the events) and messages the providers accepted.
    pub sent: u64,
    pub accepted_by_isps: u64,
    /// The most attempts one site got that day, and the site share cap.
    pub busiest_site: u64,
    pub site_cap: Option<u32>,
    /// Every sending day of the run stayed within its caps.
    pub held: bool,
}

/// One source IP's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRow {
    pub ip: String,
    pub events: Counts,
    pub sites: Vec<SitePeak>,
    pub warmup: Option<WarmupCheck>,
}

/// The whole finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub providers: Vec<ProviderRow>,
    pub ips: Vec<IpRow>,
    /// Messages accepted by ingest and their final outcomes (from the events).
    pub accepted: u64,
    pub totals: Counts,
    /// (Message-ID, recipient) pairs a provider accepted more than once.
    pub duplicates: usize,
    /// One line per failed check; empty means the run passed.
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The message id ingest gave a message, from the Message-ID header the
/// simulator recorded (`<id@from-domain>`).
pub fn sim_message_id(header: &str) -> &str {
    let inner = header.trim_matches(['<', '>']);
    inner.split_once('@').map_or(inner, |(id, _)| id)
}

pub fn analyse(i: &Inputs) -> Outcome {
    let providers = i.providers.iter().map(|p| provider_row(i, p)).collect();
    let ips: Vec<IpRow> = i.ips.iter().map(|ip| ip_row(i, ip)).collect();
    let mut failures = fate_failures(i);
    let violations = i.sim.total_violations();
    if violations > 0 {
        failures.push(format!(
            "the simulated providers counted {violations} limit violations ({})",
            violation_list(i.sim)
        ));
    }
    for row in &ips {
        if let Some(w) = row.warmup.as_ref().filter(|w| !w.held) {
            failures.push(format!(
                "warm-up cap broken on {}: {} attempts (busiest site {}) on warm-up day {} with a cap of {} (site cap {})",
                row.ip,
                w.sent,
                w.busiest_site,
                w.day,
                cap_text(w.cap),
                cap_text(w.site_cap)
            ));
        }
    }
    let totals = Counts {
        delivered: count_final(i.tally, EventKind::Delivered),
        bounced: count_final(i.tally, EventKind::Bounced),
        expired: count_final(i.tally, EventKind::Expired),
        deferred: i.tally.totals().deferred,
    };
    Outcome {
        providers,
        ips,
        accepted: i.accepted.len() as u64,
        totals,
        duplicates: i.sim.duplicates().len(),
        failures,
    }
}

fn cap_text(cap: Option<u32>) -> String {
    cap.map_or_else(|| "none".to_owned(), |c| c.to_string())
}

fn count_final(t: &Tally, kind: EventKind) -> u64 {
    let last = t.finals.values().filter_map(|k| k.last());
    last.filter(|k| **k == kind).count() as u64
}

/// Lost, doubly-finished, and delivered-versus-simulator mismatches.
fn fate_failures(i: &Inputs) -> Vec<String> {
    let mut out = Vec::new();
    let missing: Vec<&String> = i
        .accepted
        .iter()
        .filter(|id| !i.tally.finals.contains_key(*id))
        .collect();
    if !missing.is_empty() {
        out.push(format!(
            "{} accepted messages have no final event (lost or still retrying), e.g. {}",
            missing.len(),
            examples(missing.iter().map(|s| s.as_str()))
        ));
    }
    let twice: Vec<&str> = i
        .accepted
        .iter()
        .filter(|id| i.tally.finals.get(*id).is_some_and(|k| k.len() > 1))
        .map(|s| s.as_str())
        .collect();
    if !twice.is_empty() {
        out.push(format!(
            "{} messages have more than one final event, e.g. {}",
            twice.len(),
            examples(twice.into_iter())
        ));
    }
    let sim: BTreeSet<&str> = i
        .sim
        .messages
        .iter()
        .map(|m| sim_message_id(&m.message_id))
        .collect();
    let delivered: HashSet<&str> = i.tally.delivered_ids().collect();
    let unseen: Vec<&str> = delivered
        .iter()
        .copied()
        .filter(|id| !sim.contains(id))
        .collect();
    if !unseen.is_empty() {
        out.push(format!(
            "{} messages have a delivered event but no provider accepted them, e.g. {}",
            unseen.len(),
            examples(unseen.into_iter())
        ));
    }
    let unreported: Vec<&str> = sim
        .iter()
        .copied()
        .filter(|id| !delivered.contains(id))
        .collect();
    if !unreported.is_empty() {
        out.push(format!(
            "{} messages were accepted by a provider without a delivered event, e.g. {}",
            unreported.len(),
            examples(unreported.into_iter())
        ));
    }
    out
}

fn examples<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    let some: Vec<&str> = ids.take(3).collect();
    some.join(", ")
}

fn violation_list(sim: &Report) -> String {
    let mut parts = Vec::new();
    for p in &sim.providers {
        for s in &p.sources {
            for (kind, n) in &s.violations {
                parts.push(format!(
                    "{} from {}: {}={n}",
                    p.name,
                    s.source_ip,
                    kind.name()
                ));
            }
        }
    }
    parts.join("; ")
}

fn provider_row(i: &Inputs, p: &Provider) -> ProviderRow {
    let sim = i.sim.providers.iter().find(|s| s.name == p.name);
    let sources = sim.map(|s| s.sources.as_slice()).unwrap_or_default();
    ProviderRow {
        name: p.name.to_owned(),
        delivered: sources.iter().map(|s| s.accepted).sum(),
        events: i.tally.by_site(p.name),
        peak_per_minute: sources.iter().map(|s| s.peak_per_minute).max().unwrap_or(0),
        sender_limit: p.sender_per_minute(),
        isp_limit: sim.and_then(|s| s.limits.messages_per_minute),
        connections: sources.iter().map(|s| s.connections).sum(),
        connection_limit: sim.and_then(|s| s.limits.connections_per_ip),
        violations: sources.iter().flat_map(|s| s.violations.values()).sum(),
    }
}

fn ip_row(i: &Inputs, ip: &str) -> IpRow {
    let sites = i
        .providers
        .iter()
        .map(|p| {
            let sim = i.sim.providers.iter().find(|s| s.name == p.name);
            let peak = ip
                .parse()
                .ok()
                .and_then(|addr| i.sim.source(p.name, addr))
                .map_or(0, |s| s.peak_per_minute);
            SitePeak {
                site: p.name.to_owned(),
                peak_per_minute: peak,
                sender_limit: p.sender_per_minute(),
                isp_limit: sim.and_then(|s| s.limits.messages_per_minute),
            }
        })
        .collect();
    IpRow {
        ip: ip.to_owned(),
        events: i.tally.by_ip(ip),
        sites,
        warmup: i.warming.contains(&ip).then(|| warmup_check(i, ip)),
    }
}

/// Checks each UTC day the IP sent on against the plan's day: the run's
/// first sending day is warm-up day 1 (the demo starts from a fresh data
/// directory), and each later sending day one more.
fn warmup_check(i: &Inputs, ip: &str) -> WarmupCheck {
    let mut per_day: BTreeMap<u32, (u64, u64)> = BTreeMap::new(); // day -> (attempts, busiest site)
    for ((a, _, day), n) in &i.tally.attempts {
        if a == ip {
            let e = per_day.entry(*day).or_default();
            e.0 += n;
            e.1 = e.1.max(*n);
        }
    }
    let mut accepted: BTreeMap<u32, u64> = BTreeMap::new();
    for m in i
        .sim
        .messages
        .iter()
        .filter(|m| m.source_ip.to_string() == ip)
    {
        *accepted
            .entry((m.accepted_at_unix_ms / 86_400_000) as u32)
            .or_default() += 1;
    }
    let mut days: BTreeSet<u32> = per_day.keys().copied().collect();
    days.extend(accepted.keys().copied());
    let mut check = WarmupCheck {
        day: 1,
        cap: i.plan.cap(1),
        sent: 0,
        accepted_by_isps: 0,
        busiest_site: 0,
        site_cap: i.plan.cap(1).map(|c| i.plan.site_cap(c)),
        held: true,
    };
    for (n, cal) in days.iter().enumerate() {
        let day = n as u32 + 1;
        let (sent, busiest) = per_day.get(cal).copied().unwrap_or_default();
        let ok_by_isps = accepted.get(cal).copied().unwrap_or_default();
        let cap = i.plan.cap(day);
        let site_cap = cap.map(|c| i.plan.site_cap(c));
        let within = |n: u64, cap: Option<u32>| cap.is_none_or(|c| n <= u64::from(c));
        let held = within(sent, cap) && within(ok_by_isps, cap) && within(busiest, site_cap);
        check = WarmupCheck {
            day,
            cap,
            sent,
            accepted_by_isps: ok_by_isps,
            busiest_site: busiest,
            site_cap,
            held: check.held && held,
        };
    }
    check
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
