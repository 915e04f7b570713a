//! A week of random traffic, replies, connections and signals, checked against an
//! independent model of the limits (plain timestamp lists and counts, not engine state).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use proptest::prelude::*;
use sluice_shaping::*;

const T0: u64 = 1_700_000_000_000;

/// splitmix64: the simulation's own randomness, seeded by proptest.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn maybe(&mut self, percent: u64, lo: u32, hi: u32) -> Option<u32> {
        self.chance(percent)
            .then(|| lo + self.below(u64::from(hi - lo + 1)) as u32)
    }
}

const PLAN: [u32; 5] = [30, 60, 120, 250, 500];
const SHARE: u32 = 60;

fn random_limits(r: &mut Rng) -> Limits {
    Limits {
        messages_per_second: r.maybe(60, 1, 8),
        messages_per_minute: Some(10 + r.below(200) as u32),
        messages_per_hour: r.maybe(50, 50, 2_000),
        messages_per_day: r.maybe(40, 200, 10_000),
        burst: Some(1 + r.below(6) as u32),
        max_connections: Some(1 + r.below(4) as u32),
        new_connections_per_minute: Some(2 + r.below(20) as u32),
        messages_per_connection: Some(1 + r.below(20) as u32),
        recipients_per_transaction: Some(50),
    }
}

fn sites(extra: usize) -> Vec<Site> {
    let mut s = vec![
        Site::new("google", Some("google")),
        Site::new("yahoo", Some("yahoo")),
        Site::new("outlook", Some("microsoft")),
        Site::new("office365", Some("microsoft")),
    ];
    s.extend((0..extra).map(|i| Site::new(format!("mx:s{i}.example"), None)));
    s
}

fn config(r: &mut Rng, n_ips: usize, sites: &[Site]) -> EngineConfig {
    let mut cfg = EngineConfig::default();
    for i in 0..n_ips {
        let plan = (i % 2 == 0).then(|| "sim".to_owned());
        cfg.ips.push(IpConfig {
            address: IpAddr::from([10, 0, 0, i as u8]),
            pool: "p".into(),
            warmup_plan: plan,
        });
    }
    let days = PLAN
        .iter()
        .map(|&d| PlanDay {
            hourly: Some(d / 4 + 1),
            ..PlanDay::daily(d)
        })
        .collect();
    cfg.warmup.plans.insert("sim".into(), WarmupPlan { days });
    cfg.warmup.max_site_share_percent = SHARE as u8;
    for s in sites {
        cfg.limits.sites.insert(s.name.clone(), random_limits(r));
    }
    let ip0 = cfg.ips[0].address;
    cfg.limits.ips.insert(
        ip0,
        IpLimits {
            default: random_limits(r),
            ..IpLimits::default()
        },
    );
    cfg.limits
        .providers
        .insert("microsoft".into(), random_limits(r));
    cfg.replies.rules.push(ReplyRule {
        name: "sim-ip-block".into(),
        provider: None,
        code: Some("^554$".into()),
        enhanced: None,
        text: Some("ip blocked".into()),
        action: RuleAction::SuspendIp,
        duration: Some(Span::mins(30)),
        retry_after: None,
        class: None,
    });
    cfg
}

/// The independent model: what was sent and when, and what the engine was told.
#[derive(Default)]
struct Model {
    /// Send times per (ip, site) path and per (ip, provider).
    sends: HashMap<(IpAddr, String), VecDeque<u64>>,
    provider_sends: HashMap<(IpAddr, String), VecDeque<u64>>,
    hour_counts: HashMap<(IpAddr, String, u64), u32>,
    day_counts: HashMap<(IpAddr, String, u64), u32>,
    ip_day: HashMap<(IpAddr, u64), u32>,
    ip_hour: HashMap<(IpAddr, u64), u32>,
    sending_days: HashMap<IpAddr, Vec<u64>>,
    path_suspended: HashMap<(IpAddr, String), u64>,
    ip_suspended: HashMap<IpAddr, u64>,
    paused: HashMap<IpAddr, bool>,
    open: HashMap<(IpAddr, String), u32>,
    provider_open: HashMap<(IpAddr, String), u32>,
    connects: HashMap<(IpAddr, String), VecDeque<u64>>,
    provider_connects: HashMap<(IpAddr, String), VecDeque<u64>>,
    sent_total: u64,
}

fn window_push(q: &mut VecDeque<u64>, t: u64, width: u64) {
    while q.front().is_some_and(|&f| f + width <= t) {
        q.pop_front();
    }
    q.push_back(t);
}

fn count_within(q: &VecDeque<u64>, t: u64, width: u64) -> u32 {
    q.iter().rev().take_while(|&&u| u + width > t).count() as u32
}

fn warm_cap(days_sent: usize) -> Option<&'static u32> {
    PLAN.get(days_sent - 1)
}

impl Model {
    fn check_send(&mut self, cfg: &EngineConfig, t: u64, ip: IpAddr, site: &Site) {
        let key = (ip, site.name.clone());
        assert!(
            !self.paused.get(&ip).copied().unwrap_or(false),
            "sent from paused {ip}"
        );
        assert!(
            self.ip_suspended.get(&ip).is_none_or(|&u| t >= u),
            "sent from suspended {ip}"
        );
        assert!(
            self.path_suspended.get(&key).is_none_or(|&u| t >= u),
            "sent on suspended path {key:?}"
        );
        let l = cfg.limits.for_path(ip, &site.name);
        let (hour, day) = (t / HOUR, t / DAY);
        let q = self.sends.entry(key.clone()).or_default();
        window_push(q, t, MINUTE);
        check_rates(&l, q, t, &format!("path {key:?}"));
        let h = self
            .hour_counts
            .entry((ip, site.name.clone(), hour))
            .or_default();
        *h += 1;
        assert!(
            l.messages_per_hour.is_none_or(|n| *h <= n),
            "hour cap on {key:?}"
        );
        let d = self
            .day_counts
            .entry((ip, site.name.clone(), day))
            .or_default();
        *d += 1;
        let site_today = *d;
        assert!(
            l.messages_per_day.is_none_or(|n| site_today <= n),
            "day cap on {key:?}"
        );
        if let Some(p) = &site.provider
            && let Some(pl) = cfg.limits.for_provider(p)
        {
            self.check_provider(&pl, t, ip, p);
        }
        self.check_warmup(cfg, t, ip, site_today);
        self.sent_total += 1;
    }

    fn check_provider(&mut self, pl: &Limits, t: u64, ip: IpAddr, p: &str) {
        let pk = (ip, p.to_owned());
        let q = self.provider_sends.entry(pk.clone()).or_default();
        window_push(q, t, MINUTE);
        check_rates(pl, q, t, &format!("provider {pk:?}"));
        let (h, d) = (format!("@{p}"), format!("@{p}"));
        let hc = self.hour_counts.entry((ip, h, t / HOUR)).or_default();
        *hc += 1;
        assert!(
            pl.messages_per_hour.is_none_or(|n| *hc <= n),
            "provider hour cap {pk:?}"
        );
        let dc = self.day_counts.entry((ip, d, t / DAY)).or_default();
        *dc += 1;
        assert!(
            pl.messages_per_day.is_none_or(|n| *dc <= n),
            "provider day cap {pk:?}"
        );
    }

    /// Warm-up caps may only be lower than the plan at the number of distinct days sent
    /// (holds only keep the day back), so that number gives an upper bound.
    fn check_warmup(&mut self, cfg: &EngineConfig, t: u64, ip: IpAddr, site_today: u32) {
        let day = t / DAY;
        let days = self.sending_days.entry(ip).or_default();
        if days.last() != Some(&day) {
            days.push(day);
        }
        let n_days = days.len();
        let sent_today = {
            let c = self.ip_day.entry((ip, day)).or_default();
            *c += 1;
            *c
        };
        let sent_hour = {
            let c = self.ip_hour.entry((ip, t / HOUR)).or_default();
            *c += 1;
            *c
        };
        let warming = cfg
            .ips
            .iter()
            .any(|c| c.address == ip && c.warmup_plan.is_some());
        if let (true, Some(&cap)) = (warming, warm_cap(n_days)) {
            assert!(
                sent_today <= cap,
                "{ip} sent {sent_today} on warm-up day <= {n_days}, cap {cap}"
            );
            assert!(sent_hour <= cap / 4 + 1, "{ip} hourly warm-up cap");
            assert!(site_today <= cap * SHARE / 100, "{ip} site share");
        }
    }

    fn check_connect(&mut self, cfg: &EngineConfig, t: u64, ip: IpAddr, site: &Site) {
        let key = (ip, site.name.clone());
        assert!(!self.paused.get(&ip).copied().unwrap_or(false));
        assert!(self.ip_suspended.get(&ip).is_none_or(|&u| t >= u));
        assert!(self.path_suspended.get(&key).is_none_or(|&u| t >= u));
        let l = cfg.limits.for_path(ip, &site.name);
        let open = self.open.entry(key.clone()).or_default();
        *open += 1;
        assert!(
            l.max_connections.is_none_or(|m| *open <= m),
            "concurrency on {key:?}"
        );
        let q = self.connects.entry(key.clone()).or_default();
        window_push(q, t, MINUTE);
        assert!(
            l.new_connections_per_minute
                .is_none_or(|n| q.len() as u32 <= n),
            "new connections on {key:?}"
        );
        if let Some(p) = &site.provider
            && let Some(pl) = cfg.limits.for_provider(p)
        {
            let pk = (ip, p.clone());
            let open = self.provider_open.entry(pk.clone()).or_default();
            *open += 1;
            assert!(
                pl.max_connections.is_none_or(|m| *open <= m),
                "provider concurrency {pk:?}"
            );
            let q = self.provider_connects.entry(pk).or_default();
            window_push(q, t, MINUTE);
            assert!(
                pl.new_connections_per_minute
                    .is_none_or(|n| q.len() as u32 <= n)
            );
        }
    }

    fn close(&mut self, ip: IpAddr, site: &Site) {
        *self.open.get_mut(&(ip, site.name.clone())).unwrap() -= 1;
        if let Some(c) = site
            .provider
            .as_ref()
            .and_then(|p| self.provider_open.get_mut(&(ip, p.clone())))
        {
            *c -= 1;
        }
    }
}

fn check_rates(l: &Limits, q: &VecDeque<u64>, t: u64, what: &str) {
    if let Some(n) = l.messages_per_minute {
        assert!(
            q.len() as u32 <= n,
            "{what}: {} in a minute, limit {n}",
            q.len()
        );
    }
    if let Some(n) = l.messages_per_second {
        let c = count_within(q, t, SECOND);
        assert!(c <= n, "{what}: {c} in a second, limit {n}");
    }
}

/// Replies the simulation sends, and the effect the model expects, computed from the
/// documented built-in rules rather than read back from the engine.
fn reply_for(r: &mut Rng, site: &Site) -> (&'static str, Option<(bool, u64)>) {
    let p = site.provider.as_deref();
    match r.below(100) {
        0..=84 => ("250 2.0.0 OK", None),
        85..=87 if p == Some("yahoo") => (
            "421 4.7.0 [TSS04] Messages temporarily deferred",
            Some((false, HOUR)),
        ),
        85..=87 if p == Some("google") => ("421 4.7.28 unusual rate", None),
        85..=87 if p == Some("microsoft") => ("451 4.7.500 Server busy", None),
        88..=89 => (
            "421 Too many connections from your host",
            Some((false, 5 * MINUTE)),
        ),
        90 => ("554 5.7.1 ip blocked by policy", Some((true, 30 * MINUTE))),
        _ => ("550 5.1.1 user unknown", None),
    }
}

struct OpenConn {
    conn: Connection,
    ip: IpAddr,
    site: usize,
    carried: u32,
}

fn step_gap(r: &mut Rng) -> u64 {
    match r.below(10) {
        0..=5 => r.below(200),
        6..=8 => r.below(10 * SECOND),
        _ => r.below(6 * MINUTE),
    }
}

fn simulate(seed: u64, n_ips: usize, extra_sites: usize) {
    let mut r = Rng(seed);
    let sites = sites(extra_sites);
    let cfg = config(&mut r, n_ips, &sites);
    let mut e = Engine::new(cfg.clone()).unwrap();
    let pool = e.pool_key("p").unwrap();
    let mut keys: Vec<SiteKey> = sites.iter().map(|s| e.site_key(s)).collect();
    let mut m = Model::default();
    let mut conns: Vec<OpenConn> = Vec::new();
    let mut t = T0;
    while t < T0 + 7 * DAY {
        t += step_gap(&mut r);
        let now = Millis(t);
        for _ in 0..1 + r.below(4) {
            send_one(
                &mut r, &mut e, &mut m, &cfg, now, pool, &keys, &sites, &mut conns,
            );
        }
        churn_connections(&mut r, &mut e, &mut m, &cfg, now, &keys, &sites, &mut conns);
        if r.chance(1) {
            let ip = cfg.ips[r.below(n_ips as u64) as usize].address;
            let signal = [
                Signal::Ok,
                Signal::Ok,
                Signal::Slow,
                Signal::HoldDay,
                Signal::Pause,
            ][r.below(5) as usize];
            e.set_signal(ip, signal);
            m.paused.insert(ip, signal == Signal::Pause);
        }
        if r.below(5000) == 0 {
            let snap: Snapshot =
                serde_json::from_str(&serde_json::to_string(&e.snapshot()).unwrap()).unwrap();
            e = Engine::restore(cfg.clone(), &snap).unwrap();
            // Keys belong to one engine: take them again from the restored one.
            keys = sites.iter().map(|s| e.site_key(s)).collect();
            for c in conns.drain(..) {
                m.close(c.ip, &sites[c.site]);
            }
        }
    }
    assert!(
        m.sent_total > 1_000,
        "the simulation sent too little to prove anything: {}",
        m.sent_total
    );
}

#[allow(clippy::too_many_arguments)]
fn send_one(
    r: &mut Rng,
    e: &mut Engine,
    m: &mut Model,
    cfg: &EngineConfig,
    now: Millis,
    pool: PoolKey,
    keys: &[SiteKey],
    sites: &[Site],
    conns: &mut Vec<OpenConn>,
) {
    let si = r.below(sites.len() as u64) as usize;
    let site = &sites[si];
    let g = if r.chance(30) {
        // The sender's entry point: the send also needs a connection (none idle here).
        let Ok((g, conn)) = e.decide_via(now, pool, keys[si], r.next(), |_| false) else {
            return;
        };
        let conn = conn.expect("no idle connection, so one was opened");
        m.check_connect(cfg, now.0, g.ip, site);
        conns.push(OpenConn {
            conn,
            ip: g.ip,
            site: si,
            carried: 0,
        });
        g
    } else {
        let Ok(g) = e.decide(now, pool, keys[si], r.next()) else {
            return;
        };
        g
    };
    m.check_send(cfg, now.0, g.ip, site);
    let (line, expect) = reply_for(r, site);
    let action = e.on_reply(now, g.path, &Reply::parse(line).unwrap());
    let key = (g.ip, site.name.clone());
    match expect {
        Some((false, d)) => {
            let until = m
                .path_suspended
                .get(&key)
                .copied()
                .unwrap_or(0)
                .max(now.0 + d);
            m.path_suspended.insert(key, until);
            assert_eq!(
                action.effect,
                PathEffect::PathSuspended(Millis(until)),
                "{line}"
            );
        }
        Some((true, d)) => {
            let until = m
                .ip_suspended
                .get(&g.ip)
                .copied()
                .unwrap_or(0)
                .max(now.0 + d);
            m.ip_suspended.insert(g.ip, until);
            assert_eq!(
                action.effect,
                PathEffect::IpSuspended(Millis(until)),
                "{line}"
            );
        }
        None => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn churn_connections(
    r: &mut Rng,
    e: &mut Engine,
    m: &mut Model,
    cfg: &EngineConfig,
    now: Millis,
    keys: &[SiteKey],
    sites: &[Site],
    conns: &mut Vec<OpenConn>,
) {
    if r.chance(30) {
        let si = r.below(sites.len() as u64) as usize;
        let ip = cfg.ips[r.below(cfg.ips.len() as u64) as usize].address;
        let path = e.path_for(ip, keys[si]).unwrap();
        if let Ok(conn) = e.open_connection(now, path) {
            m.check_connect(cfg, now.0, ip, &sites[si]);
            conns.push(OpenConn {
                conn,
                ip,
                site: si,
                carried: 0,
            });
        }
    }
    for c in conns.iter_mut() {
        if r.chance(50) && c.conn.take_message() {
            c.carried += 1;
            let max = cfg
                .limits
                .for_path(c.ip, &sites[c.site].name)
                .messages_per_connection;
            assert!(
                max.is_none_or(|n| c.carried <= n),
                "messages per connection"
            );
        }
    }
    if !conns.is_empty() && r.chance(25) {
        let c = conns.swap_remove(r.below(conns.len() as u64) as usize);
        m.close(c.ip, &sites[c.site]);
        e.on_connection_close(now, c.conn);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// No rate, calendar, provider, concurrency, warm-up or suspension limit is ever exceeded
    /// over a week of random traffic, replies, connections, signals and restarts.
    #[test]
    fn a_week_never_exceeds_a_limit(seed in any::<u64>(), n_ips in 2usize..6, extra in 0usize..4) {
        simulate(seed, n_ips, extra);
    }

    /// After any run of slowing replies, sustained success brings the path back to its
    /// configured ceiling, and the rate never leaves [floor, ceiling].
    #[test]
    fn backoff_recovers_to_the_ceiling(slows in 1usize..30, spacing in 1u64..30_000, seed in any::<u64>()) {
        let ip = IpAddr::from([10, 0, 0, 1]);
        let cfg = EngineConfig { ips: vec![IpConfig { address: ip, pool: "p".into(), warmup_plan: None }], ..EngineConfig::default() };
        let mut e = Engine::new(cfg).unwrap();
        let site = e.site_key(&Site::new("google", Some("google")));
        let path = e.path_for(ip, site).unwrap();
        let mut r = Rng(seed);
        let mut t = T0;
        let slow = Reply::parse("421 4.7.28 unusual rate").unwrap();
        let ok = Reply::parse("250 OK").unwrap();
        for _ in 0..slows {
            t += r.below(spacing);
            e.on_reply(Millis(t), path, if r.chance(70) { &slow } else { &ok });
            let p = e.path(path).rate_permille;
            prop_assert!((50..=1000).contains(&p));
        }
        let start = t;
        while e.path(path).rate_permille < 1000 {
            t += 1 + r.below(spacing);
            e.on_reply(Millis(t), path, &ok);
            // 19 increases of 10% at most, each needing 20 successes and a minute.
            prop_assert!(t - start <= 19 * (20 * spacing + MINUTE), "no recovery after {} ms", t - start);
        }
        prop_assert_eq!(e.path(path).rate_permille, 1000);
    }
}

/// A site that asks for little still gets its share of a warming IP while another site
/// asks for as much as it can.
#[test]
fn a_busy_site_does_not_starve_a_quiet_one() {
    let ip = IpAddr::from([10, 0, 0, 1]);
    let mut cfg = EngineConfig {
        ips: vec![IpConfig {
            address: ip,
            pool: "p".into(),
            warmup_plan: Some("flat".into()),
        }],
        ..EngineConfig::default()
    };
    cfg.warmup.plans.insert(
        "flat".into(),
        WarmupPlan {
            days: vec![PlanDay::daily(1_000); 10],
        },
    );
    let mut e = Engine::new(cfg).unwrap();
    let pool = e.pool_key("p").unwrap();
    let busy = e.site_key(&Site::new("busy", None));
    let quiet = e.site_key(&Site::new("quiet", None));
    let mut r = Rng(7);
    let mut per_day: HashMap<u64, [u32; 2]> = HashMap::new();
    let mut t = T0 - T0 % DAY;
    while t < T0 - T0 % DAY + 3 * DAY {
        for _ in 0..20 {
            if e.decide(Millis(t), pool, busy, r.next()).is_ok() {
                per_day.entry(t / DAY).or_default()[0] += 1;
            }
        }
        if e.decide(Millis(t), pool, quiet, r.next()).is_ok() {
            per_day.entry(t / DAY).or_default()[1] += 1;
        }
        t += MINUTE;
    }
    for (day, [b, q]) in per_day {
        assert!(b <= 600, "day {day}: busy took {b}");
        assert!(q >= 400, "day {day}: quiet got only {q}");
    }
}
