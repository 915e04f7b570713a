//! `Engine::reconfigure`: a new configuration applied to a running engine.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

use proptest::prelude::*;
use sluice_shaping::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn ipc(last: u8, pool: &str, plan: Option<&str>) -> IpConfig {
    IpConfig {
        address: ip(last),
        pool: pool.into(),
        warmup_plan: plan.map(str::to_owned),
    }
}

/// Built-in limits lifted except the ones a test sets.
fn config(ips: Vec<IpConfig>, limits: Limits) -> EngineConfig {
    let open = Limits {
        messages_per_minute: Some(1_000_000),
        burst: Some(1_000_000),
        max_connections: Some(1_000),
        new_connections_per_minute: Some(1_000_000),
        ..Limits::default()
    };
    let mut cfg = EngineConfig {
        ips,
        ..EngineConfig::default()
    };
    cfg.limits.default = limits.over(open);
    cfg
}

fn per_minute(n: u32, burst: u32) -> Limits {
    Limits {
        messages_per_minute: Some(n),
        burst: Some(burst),
        ..Limits::default()
    }
}

const T0: Millis = Millis(1_700_000_000_000);

fn at(secs: u64) -> Millis {
    Millis(T0.0 + secs * SECOND)
}

#[test]
fn lowered_limit_applies_to_an_existing_path_and_keeps_its_counts() {
    let cfg = config(vec![ipc(1, "p", None)], per_minute(100, 10));
    let mut e = Engine::new(cfg.clone()).unwrap();
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&Site::new("x", None)));
    let path = e.decide(T0, pool, s, 0).unwrap().path;
    for _ in 1..10 {
        e.decide(T0, pool, s, 0).unwrap();
    }
    let lowered = config(vec![ipc(1, "p", None)], per_minute(12, 10));
    let r = e.reconfigure(lowered).unwrap();
    assert_eq!(r.paths_reshaped, 1);
    assert_eq!(e.path(path).limits.messages_per_minute, Some(12));
    // 10 went under the old limit: two more fit in the minute.
    assert!(e.decide(T0, pool, s, 0).is_ok());
    assert!(e.decide(T0, pool, s, 0).is_ok());
    assert!(e.decide(T0, pool, s, 0).is_err());
    assert!(e.decide(at(30), pool, s, 0).is_err());
    assert!(e.decide(at(59), pool, s, 0).is_err());
    // Once the minute is over the new limit alone applies.
    let t = (60..200).map(at).find(|&t| e.decide(t, pool, s, 0).is_ok());
    assert!(t.is_some(), "the path sends again");
}

#[test]
fn lowered_limit_without_burst_counts_sends_spread_over_the_minute() {
    let mut e = Engine::new(config(vec![ipc(1, "p", None)], per_minute(60, 1))).unwrap();
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&Site::new("x", None)));
    // 1.1 s apart: within 60 a minute and its receiver guard.
    for i in 0..30 {
        e.decide(Millis(T0.0 + i * 1_100), pool, s, 0).unwrap();
    }
    e.reconfigure(config(vec![ipc(1, "p", None)], per_minute(31, 1)))
        .unwrap();
    let sent: Vec<u64> = (33..90)
        .filter(|&i| e.decide(at(i), pool, s, 0).is_ok())
        .collect();
    // The rate state of the old limit alone would let one go every two seconds from 30 s on.
    assert!(sent.iter().filter(|&&i| i < 60).count() <= 1, "{sent:?}");
}

#[test]
fn removed_ip_is_never_chosen_and_its_connection_still_closes() {
    let cfg = config(
        vec![ipc(1, "p", None), ipc(2, "p", None)],
        Limits::default(),
    );
    let mut e = Engine::new(cfg).unwrap();
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&Site::new("x", None)));
    let (grant, conn) = e
        .decide_via_prefer(T0, pool, s, 0, Some(ip(1)), |_| false)
        .unwrap();
    assert_eq!(grant.ip, ip(1));
    let conn = conn.unwrap();
    let r = e
        .reconfigure(config(vec![ipc(2, "p", None)], Limits::default()))
        .unwrap();
    assert_eq!(r.ips_removed, vec![ip(1)]);
    for random in 0..200 {
        assert_eq!(e.decide(T0, pool, s, random).unwrap().ip, ip(2));
        let (g, _) = e
            .decide_via_prefer(T0, pool, s, random, Some(ip(1)), |_| true)
            .unwrap();
        assert_eq!(g.ip, ip(2));
    }
    assert_eq!(e.path(grant.path).open_connections, 1);
    let reply = Reply::parse("250 2.0.0 OK").unwrap();
    e.on_reply(T0, grant.path, &reply);
    assert!(e.set_signal(ip(1), Signal::Slow));
    e.on_connection_close(T0, conn);
    assert_eq!(e.path(grant.path).open_connections, 0);
    assert_eq!(e.path(grant.path).ip, ip(1));
}

#[test]
fn returning_ip_keeps_its_warmup_day() {
    let both = config(
        vec![ipc(1, "p", Some("standard")), ipc(2, "p", None)],
        Limits::default(),
    );
    let mut e = Engine::new(both.clone()).unwrap();
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&Site::new("x", None)));
    for day in 0..3 {
        let g = e
            .decide_via_prefer(Millis(T0.0 + day * DAY), pool, s, 0, Some(ip(1)), |_| true)
            .unwrap()
            .0;
        assert_eq!(g.ip, ip(1));
    }
    assert_eq!(e.ip_state(ip(1)).unwrap().warmup.day(), 3);
    let r = e
        .reconfigure(config(vec![ipc(2, "p", None)], Limits::default()))
        .unwrap();
    assert_eq!(r.ips_removed, vec![ip(1)]);
    let r = e.reconfigure(both).unwrap();
    assert_eq!(r.ips_returned, vec![ip(1)]);
    assert!(r.ips_added.is_empty());
    assert_eq!(e.ip_state(ip(1)).unwrap().warmup.day(), 3);
    let g = e
        .decide_via_prefer(Millis(T0.0 + 3 * DAY), pool, s, 0, Some(ip(1)), |_| true)
        .unwrap()
        .0;
    assert_eq!(g.ip, ip(1));
    assert_eq!(e.ip_state(ip(1)).unwrap().warmup.day(), 4);
}

#[test]
fn ips_move_between_pools_and_new_pools_get_keys() {
    let cfg = config(
        vec![ipc(1, "a", None), ipc(2, "b", None)],
        Limits::default(),
    );
    let mut e = Engine::new(cfg).unwrap();
    let (a, b) = (e.pool_key("a").unwrap(), e.pool_key("b").unwrap());
    let s = e.site_key(&Site::new("x", None));
    assert!(e.pool_key("c").is_none());
    let moved = config(
        vec![ipc(1, "b", None), ipc(2, "c", None), ipc(3, "c", None)],
        Limits::default(),
    );
    let r = e.reconfigure(moved).unwrap();
    assert_eq!(r.ips_moved, vec![ip(1), ip(2)]);
    assert_eq!(r.ips_added, vec![ip(3)]);
    assert_eq!(e.pool_key("a"), Some(a));
    assert_eq!(e.pool_key("b"), Some(b));
    let c = e.pool_key("c").unwrap();
    assert_eq!(e.decide(T0, a, s, 0), Err(Blocked::Held));
    for random in 0..50 {
        assert_eq!(e.decide(T0, b, s, random).unwrap().ip, ip(1));
        let g = e.decide(T0, c, s, random).unwrap();
        assert!(g.ip == ip(2) || g.ip == ip(3));
        assert_eq!(e.path(g.path).pool, "c");
    }
}

#[test]
fn removed_plan_leaves_the_ip_warm() {
    let mut cfg = config(vec![ipc(1, "p", Some("tiny"))], Limits::default());
    cfg.warmup.plans.insert(
        "tiny".into(),
        WarmupPlan {
            days: vec![PlanDay::daily(2)],
        },
    );
    let mut e = Engine::new(cfg.clone()).unwrap();
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&Site::new("x", None)));
    assert!(e.decide(T0, pool, s, 0).is_ok());
    assert!(
        e.decide(T0, pool, s, 0).is_err(),
        "share of a daily cap of 2"
    );
    let mut warm = cfg.clone();
    warm.warmup.plans.clear();
    warm.ips[0].warmup_plan = None;
    let r = e.reconfigure(warm).unwrap();
    assert_eq!(r.plans_changed, vec![ip(1)]);
    assert_eq!(r.plans_redefined, vec!["tiny".to_owned()]);
    for _ in 0..100 {
        assert!(e.decide(T0, pool, s, 0).is_ok());
    }
    // Progress survives: back on the plan, the IP is on its day 1 with 101 sent today.
    e.reconfigure(cfg).unwrap();
    assert!(e.decide(T0, pool, s, 0).is_err());
    assert_eq!(e.ip_state(ip(1)).unwrap().warmup.day(), 1);
}

#[test]
fn removed_ip_whose_plan_is_removed_is_warm_when_it_returns_without_one() {
    let mut cfg = config(
        vec![ipc(1, "p", Some("tiny")), ipc(2, "p", None)],
        Limits::default(),
    );
    cfg.warmup.plans.insert(
        "tiny".into(),
        WarmupPlan {
            days: vec![PlanDay::daily(2)],
        },
    );
    let mut e = Engine::new(cfg.clone()).unwrap();
    let mut gone = config(vec![ipc(2, "p", None)], Limits::default());
    gone.warmup.plans.clear();
    let r = e.reconfigure(gone).unwrap();
    assert_eq!(r.plans_changed, vec![ip(1)]);
    let mut back = config(
        vec![ipc(1, "p", None), ipc(2, "p", None)],
        Limits::default(),
    );
    back.warmup.plans.clear();
    let r = e.reconfigure(back).unwrap();
    assert!(r.plans_changed.is_empty());
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&Site::new("x", None)));
    for _ in 0..10 {
        let g = e
            .decide_via_prefer(T0, pool, s, 0, Some(ip(1)), |_| true)
            .unwrap()
            .0;
        assert_eq!(g.ip, ip(1));
    }
}

/// Two engines that saw the same calls.
fn twins(cfg: &EngineConfig) -> (Engine, Engine) {
    (
        Engine::new(cfg.clone()).unwrap(),
        Engine::new(cfg.clone()).unwrap(),
    )
}

fn same_decisions(a: &mut Engine, b: &mut Engine) {
    let (pa, pb) = (a.pool_key("p").unwrap(), b.pool_key("p").unwrap());
    let site = Site::new("x", Some("prov"));
    let (sa, sb) = (a.site_key(&site), b.site_key(&site));
    for i in 0..300u64 {
        let t = Millis(T0.0 + i * 137);
        let (da, db) = (a.decide(t, pa, sa, i * 7919), b.decide(t, pb, sb, i * 7919));
        assert_eq!(da.map(|g| g.ip), db.map(|g| g.ip));
    }
    assert_eq!(a.snapshot(), b.snapshot());
}

#[test]
fn invalid_config_is_refused_and_changes_nothing() {
    let cfg = config(
        vec![ipc(1, "p", Some("standard")), ipc(2, "p", None)],
        per_minute(40, 5),
    );
    let (mut a, mut b) = twins(&cfg);
    same_decisions(&mut a, &mut b);
    let mut bad = config(vec![ipc(3, "q", Some("nope"))], per_minute(1, 1));
    bad.limits.providers.insert("prov".into(), per_minute(1, 1));
    let err = a.reconfigure(bad).unwrap_err();
    assert_eq!(err.field, "ips[0].warmup_plan");
    let mut twice = cfg.clone();
    twice.ips.push(ipc(1, "q", None));
    assert_eq!(a.reconfigure(twice).unwrap_err().field, "ips[2].address");
    assert_eq!(a.config(), &cfg);
    assert!(a.pool_key("q").is_none());
    same_decisions(&mut a, &mut b);
}

#[test]
fn sites_retry_replies_and_backoff_cannot_change() {
    let cfg = config(vec![ipc(1, "p", None)], Limits::default());
    let mut e = Engine::new(cfg.clone()).unwrap();
    let mut sites = cfg.clone();
    sites.sites.builtin_rules = false;
    let err = e.reconfigure(sites).unwrap_err();
    assert_eq!(err.field, "sites");
    assert!(err.to_string().contains("restart"), "{err}");
    let mut retry = cfg.clone();
    retry.retry.max_age = Span::days(1);
    assert_eq!(e.reconfigure(retry).unwrap_err().field, "retry");
    let mut backoff = cfg.clone();
    backoff.backoff.default_suspension = Span::mins(1);
    assert_eq!(e.reconfigure(backoff).unwrap_err().field, "backoff");
    let mut replies = cfg.clone();
    replies.replies.builtin_rules = !replies.replies.builtin_rules;
    assert_eq!(e.reconfigure(replies).unwrap_err().field, "replies");
    assert_eq!(e.config(), &cfg);
    assert!(e.reconfigure(cfg).is_ok());
}

#[test]
fn provider_limits_added_count_earlier_sends_and_removed_ones_lift() {
    let cfg = config(vec![ipc(1, "p", None)], Limits::default());
    let mut e = Engine::new(cfg.clone()).unwrap();
    let pool = e.pool_key("p").unwrap();
    let (s1, s2) = (
        e.site_key(&Site::new("a", Some("prov"))),
        e.site_key(&Site::new("b", Some("prov"))),
    );
    for _ in 0..3 {
        e.decide(T0, pool, s1, 0).unwrap();
        e.decide(T0, pool, s2, 0).unwrap();
    }
    let mut limited = cfg.clone();
    limited
        .limits
        .providers
        .insert("prov".into(), per_minute(8, 8));
    e.reconfigure(limited).unwrap();
    assert!(e.decide(T0, pool, s1, 0).is_ok());
    assert!(e.decide(T0, pool, s2, 0).is_ok());
    assert!(e.decide(T0, pool, s1, 0).is_err());
    assert!(e.decide(T0, pool, s2, 0).is_err());
    e.reconfigure(cfg).unwrap();
    for _ in 0..20 {
        assert!(e.decide(T0, pool, s1, 0).is_ok());
    }
}

/// The configurations the property test switches between: IPs come and go and change
/// pools, limits rise and fall, provider limits appear and disappear.
fn configs() -> Vec<EngineConfig> {
    let lim = |s: Option<u32>, m: Option<u32>, burst: u32, h: Option<u32>| Limits {
        messages_per_second: s,
        messages_per_minute: m,
        messages_per_hour: h,
        burst: Some(burst),
        ..Limits::default()
    };
    let mut c0 = config(
        vec![ipc(1, "p", None), ipc(2, "p", None), ipc(3, "q", None)],
        lim(Some(3), Some(30), 5, None),
    );
    c0.limits
        .sites
        .insert("a".into(), lim(None, Some(20), 20, None));
    c0.limits
        .providers
        .insert("prov".into(), lim(None, Some(25), 3, None));
    let mut c1 = config(
        vec![
            ipc(1, "p", None),
            ipc(2, "q", None),
            ipc(4, "p", Some("standard")),
        ],
        lim(None, Some(10), 1, None),
    );
    c1.limits.ips.insert(
        ip(1),
        IpLimits {
            sites: [("a".to_owned(), lim(Some(1), Some(6), 1, None))].into(),
            ..IpLimits::default()
        },
    );
    c1.limits
        .providers
        .insert("prov".into(), lim(Some(2), Some(12), 2, None));
    let mut c2 = config(
        vec![ipc(2, "p", None), ipc(3, "p", None)],
        lim(None, Some(50), 50, Some(200)),
    );
    c2.limits.default.new_connections_per_minute = Some(3);
    let mut c3 = config(
        vec![
            ipc(1, "p", None),
            ipc(2, "p", None),
            ipc(3, "p", None),
            ipc(4, "q", None),
        ],
        lim(None, Some(8), 8, None),
    );
    c3.limits.providers.insert(
        "prov".into(),
        Limits {
            new_connections_per_minute: Some(2),
            ..lim(None, Some(9), 9, None)
        },
    );
    vec![c0, c1, c2, c3]
}

#[derive(Clone, Debug)]
enum Op {
    Reconfigure(usize),
    Advance(u64),
    Decide(usize, usize, u64),
    DecideVia(usize, usize, u64, bool),
    Close(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0usize..4).prop_map(Op::Reconfigure),
        4 => (0u64..20_000).prop_map(Op::Advance),
        8 => (0usize..2, 0usize..3, any::<u64>()).prop_map(|(p, s, r)| Op::Decide(p, s, r)),
        4 => (0usize..2, 0usize..3, any::<u64>(), any::<bool>())
            .prop_map(|(p, s, r, i)| Op::DecideVia(p, s, r, i)),
        2 => any::<usize>().prop_map(Op::Close),
    ]
}

/// Send and connection times per key, checked against the limits in force.
#[derive(Default)]
struct Model {
    sends: HashMap<(IpAddr, String), VecDeque<u64>>,
    connects: HashMap<(IpAddr, String), VecDeque<u64>>,
    hours: BTreeMap<(IpAddr, String, u64), u32>,
}

impl Model {
    fn record(&mut self, key: (IpAddr, String), t: u64, l: &Limits, what: &str) {
        let q = self.sends.entry(key.clone()).or_default();
        q.push_back(t);
        while q.front().is_some_and(|&f| f + MINUTE <= t) {
            q.pop_front();
        }
        let within = |w: u64| q.iter().filter(|&&u| u + w > t).count() as u32;
        if let Some(n) = l.messages_per_second {
            assert!(
                within(SECOND) <= n,
                "{what}: {} in a second > {n}",
                within(SECOND)
            );
        }
        if let Some(n) = l.messages_per_minute {
            assert!(
                within(MINUTE) <= n,
                "{what}: {} in a minute > {n}",
                within(MINUTE)
            );
        }
        let h = self.hours.entry((key.0, key.1, t / HOUR)).or_default();
        *h += 1;
        if let Some(n) = l.messages_per_hour {
            assert!(*h <= n, "{what}: {h} in an hour > {n}");
        }
    }

    fn connect(&mut self, key: (IpAddr, String), t: u64, l: &Limits, what: &str) {
        let q = self.connects.entry(key).or_default();
        q.push_back(t);
        while q.front().is_some_and(|&f| f + MINUTE <= t) {
            q.pop_front();
        }
        if let Some(n) = l.new_connections_per_minute {
            assert!(
                q.len() as u32 <= n,
                "{what}: {} connections in a minute > {n}",
                q.len()
            );
        }
    }
}

fn run(ops: Vec<Op>) {
    let cfgs = configs();
    let sites = [
        Site::new("a", Some("prov")),
        Site::new("b", Some("prov")),
        Site::new("c", None),
    ];
    let mut cfg = cfgs[0].clone();
    let mut e = Engine::new(cfg.clone()).unwrap();
    let keys: Vec<SiteKey> = sites.iter().map(|s| e.site_key(s)).collect();
    let mut model = Model::default();
    let mut open: Vec<Connection> = Vec::new();
    let mut t = T0.0;
    for op in ops {
        let (pool, site, grant, conn) = match op {
            Op::Reconfigure(i) => {
                cfg = cfgs[i].clone();
                e.reconfigure(cfg.clone()).unwrap();
                continue;
            }
            Op::Advance(ms) => {
                t += ms;
                continue;
            }
            Op::Close(i) => {
                if !open.is_empty() {
                    let c = open.swap_remove(i % open.len());
                    e.on_connection_close(Millis(t), c);
                }
                continue;
            }
            Op::Decide(p, s, r) => {
                let Some(pool) = e.pool_key(["p", "q"][p]) else {
                    continue;
                };
                let Ok(g) = e.decide(Millis(t), pool, keys[s], r) else {
                    continue;
                };
                (p, s, g, None)
            }
            Op::DecideVia(p, s, r, idle) => {
                let Some(pool) = e.pool_key(["p", "q"][p]) else {
                    continue;
                };
                let Ok((g, c)) = e.decide_via(Millis(t), pool, keys[s], r, |_| idle) else {
                    continue;
                };
                (p, s, g, c)
            }
        };
        let pool = ["p", "q"][pool];
        let site = &sites[site];
        assert!(
            cfg.ips
                .iter()
                .any(|c| c.address == grant.ip && c.pool == pool),
            "{} is not in pool {pool}",
            grant.ip
        );
        let l = cfg.limits.for_path(grant.ip, &site.name);
        let what = format!("{} {} at {}", grant.ip, site.name, t - T0.0);
        model.record((grant.ip, site.name.clone()), t, &l, &what);
        let pl = site
            .provider
            .as_deref()
            .and_then(|p| cfg.limits.for_provider(p));
        let pkey = site
            .provider
            .clone()
            .map(|p| (grant.ip, format!("provider {p}")));
        if let Some(k) = &pkey {
            model.record(k.clone(), t, &pl.unwrap_or_default(), &what);
        }
        if let Some(c) = conn {
            model.connect((grant.ip, site.name.clone()), t, &l, &what);
            if let Some(k) = pkey {
                model.connect(k, t, &pl.unwrap_or_default(), &what);
            }
            open.push(c);
        }
    }
    for c in open {
        e.on_connection_close(Millis(t), c);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn reconfiguring_never_lets_a_limit_in_force_be_exceeded(ops in prop::collection::vec(op(), 1..400)) {
        run(ops);
    }
}

#[test]
fn a_pool_without_ips_holds_its_mail_until_one_is_added() {
    let mut e = Engine::new(config(vec![], per_minute(100, 10))).unwrap();
    assert!(e.pool_key("p").is_none());
    let (pool, s) = (e.pool_key_or_new("p"), e.site_key(&Site::new("x", None)));
    assert_eq!(e.decide(T0, pool, s, 0), Err(Blocked::Held));
    e.reconfigure(config(vec![ipc(1, "p", None)], per_minute(100, 10)))
        .unwrap();
    assert_eq!(e.pool_key("p"), Some(pool), "the key stays valid");
    assert_eq!(e.decide(T0, pool, s, 0).unwrap().ip, ip(1));
}
