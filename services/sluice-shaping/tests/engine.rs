//! Engine behaviour, one rule at a time.

use std::net::IpAddr;

use sluice_shaping::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn ipc(last: u8, plan: Option<&str>) -> IpConfig {
    IpConfig {
        address: ip(last),
        pool: "p".into(),
        warmup_plan: plan.map(str::to_owned),
    }
}

/// An engine whose built-in limits are lifted except the ones a test sets.
fn engine_with(
    ips: Vec<IpConfig>,
    limits: Limits,
    tweak: impl FnOnce(&mut EngineConfig),
) -> Engine {
    let mut cfg = EngineConfig {
        ips,
        ..EngineConfig::default()
    };
    let open = Limits {
        messages_per_minute: Some(1_000_000),
        burst: Some(1_000_000),
        max_connections: Some(1_000),
        new_connections_per_minute: Some(1_000_000),
        ..Limits::default()
    };
    cfg.limits.default = limits.over(open);
    tweak(&mut cfg);
    Engine::new(cfg).unwrap()
}

fn site(name: &str, provider: Option<&str>) -> Site {
    Site::new(name, provider)
}

const T0: Millis = Millis(1_700_000_000_000);

#[test]
fn per_second_limit_blocks_and_says_until_when() {
    let mut e = engine_with(
        vec![ipc(1, None)],
        Limits {
            messages_per_second: Some(2),
            burst: Some(1),
            ..Limits::default()
        },
        |_| {},
    );
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&site("x", None)));
    assert!(e.decide(T0, pool, s, 0).is_ok());
    assert!(
        e.decide(T0, pool, s, 0).is_err(),
        "burst 1: second message must wait"
    );
    let Err(Blocked::Until(t)) = e.decide(T0, pool, s, 0) else {
        panic!()
    };
    // 2 per second over the second and its receiver guard (60 ms): 530 ms apart.
    assert_eq!(t, Millis(T0.0 + 530));
    assert!(e.decide(t, pool, s, 0).is_ok());
}

#[test]
fn daily_limit_resets_at_utc_midnight() {
    let mut e = engine_with(
        vec![ipc(1, None)],
        Limits {
            messages_per_day: Some(3),
            ..Limits::default()
        },
        |_| {},
    );
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&site("x", None)));
    for _ in 0..3 {
        e.decide(T0, pool, s, 0).unwrap();
    }
    assert_eq!(
        e.decide(T0, pool, s, 0),
        Err(Blocked::Until(T0.next_day_start()))
    );
    assert!(e.decide(T0.next_day_start(), pool, s, 0).is_ok());
}

#[test]
fn choice_is_weighted_by_remaining_allowance_and_deterministic() {
    let mut e = engine_with(vec![ipc(1, None), ipc(2, None)], Limits::default(), |c| {
        c.limits.ips.insert(
            ip(1),
            IpLimits {
                default: Limits {
                    messages_per_day: Some(100),
                    ..Limits::default()
                },
                ..IpLimits::default()
            },
        );
        c.limits.ips.insert(
            ip(2),
            IpLimits {
                default: Limits {
                    messages_per_day: Some(300),
                    ..Limits::default()
                },
                ..IpLimits::default()
            },
        );
    });
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&site("x", None)));
    // Weights 100 and 300: random values 0..100 pick the first IP, 100..400 the second.
    assert_eq!(e.decide(T0, pool, s, 99).unwrap().ip, ip(1));
    assert_eq!(e.decide(T0, pool, s, 100).unwrap().ip, ip(2));
    let mut count = [0u32; 2];
    for r in 0..200u64 {
        let g = e
            .decide(T0, pool, s, r.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .unwrap();
        count[usize::from(g.ip == ip(2))] += 1;
    }
    assert!(count[1] > count[0] * 2, "{count:?}");
}

#[test]
fn warming_ip_fills_its_cap_then_spills_to_warmed_ip() {
    let mut e = engine_with(
        vec![ipc(1, Some("tiny")), ipc(2, None)],
        Limits::default(),
        |c| {
            c.warmup.plans.insert(
                "tiny".into(),
                WarmupPlan {
                    days: vec![PlanDay::daily(5), PlanDay::daily(10)],
                },
            );
            c.warmup.max_site_share_percent = 100;
        },
    );
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&site("x", None)));
    let ips: Vec<IpAddr> = (0..8)
        .map(|r| e.decide(T0, pool, s, r).unwrap().ip)
        .collect();
    assert_eq!(&ips[..5], &[ip(1); 5]);
    assert_eq!(&ips[5..], &[ip(2); 3]);
    assert_eq!(e.ip_state(ip(1)).unwrap().warmup.day(), 1);
    // Next calendar day: day 2, cap 10.
    let d2 = T0.next_day_start();
    let n = (0..20)
        .filter(|&r| e.decide(d2, pool, s, r).unwrap().ip == ip(1))
        .count();
    assert_eq!(n, 10);
    assert_eq!(e.ip_state(ip(1)).unwrap().warmup.day(), 2);
}

#[test]
fn warming_ip_alone_waits_for_next_day() {
    let mut e = engine_with(vec![ipc(1, Some("standard"))], Limits::default(), |c| {
        c.warmup.max_site_share_percent = 100
    });
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&site("x", None)));
    // Standard plan day 1: 50 per day, 5 per hour.
    for _ in 0..5 {
        e.decide(T0, pool, s, 0).unwrap();
    }
    assert_eq!(
        e.decide(T0, pool, s, 0),
        Err(Blocked::Until(T0.next_hour_start()))
    );
}

#[test]
fn site_share_keeps_room_for_other_sites() {
    let mut e = engine_with(vec![ipc(1, Some("tiny"))], Limits::default(), |c| {
        c.warmup.plans.insert(
            "tiny".into(),
            WarmupPlan {
                days: vec![PlanDay::daily(10)],
            },
        );
    });
    let pool = e.pool_key("p").unwrap();
    let (a, b) = (e.site_key(&site("a", None)), e.site_key(&site("b", None)));
    let sent_a = (0..20).filter(|_| e.decide(T0, pool, a, 0).is_ok()).count();
    assert_eq!(sent_a, 6, "60% share of 10");
    let sent_b = (0..20).filter(|_| e.decide(T0, pool, b, 0).is_ok()).count();
    assert_eq!(sent_b, 4, "the rest of the daily cap");
}

#[test]
fn per_site_warmup_cap() {
    let mut e = engine_with(vec![ipc(1, Some("p1"))], Limits::default(), |c| {
        let mut day = PlanDay::daily(100);
        day.sites.insert("google".into(), 3);
        c.warmup
            .plans
            .insert("p1".into(), WarmupPlan { days: vec![day] });
    });
    let pool = e.pool_key("p").unwrap();
    let g = e.site_key(&site("google", Some("google")));
    assert_eq!(
        (0..10).filter(|_| e.decide(T0, pool, g, 0).is_ok()).count(),
        3
    );
}

#[test]
fn signals_hold_and_pause() {
    let mut e = engine_with(vec![ipc(1, Some("standard"))], Limits::default(), |_| {});
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&site("x", None)));
    e.decide(T0, pool, s, 0).unwrap();
    e.set_signal(ip(1), Signal::HoldDay);
    let d2 = T0.next_day_start();
    e.decide(d2, pool, s, 0).unwrap();
    assert_eq!(e.ip_state(ip(1)).unwrap().warmup.day(), 1, "held on day 1");
    e.set_signal(ip(1), Signal::Pause);
    assert_eq!(
        e.decide(d2.after(Span::hours(2)), pool, s, 0),
        Err(Blocked::Held)
    );
    e.set_signal(ip(1), Signal::Ok);
    let d3 = d2.next_day_start();
    e.decide(d3, pool, s, 0).unwrap();
    assert_eq!(e.ip_state(ip(1)).unwrap().warmup.day(), 2);
}

#[test]
fn slow_signal_halves_the_rate() {
    let mut e = engine_with(
        vec![ipc(1, None)],
        Limits {
            messages_per_second: Some(10),
            burst: Some(1),
            ..Limits::default()
        },
        |_| {},
    );
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&site("x", None)));
    e.set_signal(ip(1), Signal::Slow);
    e.decide(T0, pool, s, 0).unwrap();
    // 10 per (guarded) second is one per 106 ms; slowed to half, 212 ms.
    assert_eq!(
        e.decide(T0, pool, s, 0),
        Err(Blocked::Until(Millis(T0.0 + 212)))
    );
}

#[test]
fn gmail_421_4_7_28_slows_and_success_recovers() {
    let mut e = engine_with(
        vec![ipc(1, None)],
        Limits {
            messages_per_second: Some(10),
            ..Limits::default()
        },
        |_| {},
    );
    let (pool, s) = (
        e.pool_key("p").unwrap(),
        e.site_key(&site("google", Some("google"))),
    );
    let g = e.decide(T0, pool, s, 0).unwrap();
    let a = e.on_reply(
        T0,
        g.path,
        &Reply::parse("421 4.7.28 unusual rate").unwrap(),
    );
    assert_eq!(a.effect, PathEffect::Slowed(500));
    assert_eq!(a.rule.as_deref(), Some("gmail-4.7.28"));
    assert!(matches!(a.verdict, Verdict::Retry { .. }));
    assert_eq!(a.classification.unwrap().class, BounceClass::Reputation);
    let ok = Reply::parse("250 2.0.0 OK").unwrap();
    let mut now = T0;
    while e.path(g.path).rate_permille < 1000 {
        now = now.after(Span::secs(10));
        assert_eq!(e.on_reply(now, g.path, &ok).verdict, Verdict::Delivered);
        assert!(now.0 - T0.0 < 3_600_000);
    }
}

#[test]
fn suspend_path_and_ip() {
    let mut e = engine_with(vec![ipc(1, None)], Limits::default(), |_| {});
    let pool = e.pool_key("p").unwrap();
    let (y, o) = (
        e.site_key(&site("yahoo", Some("yahoo"))),
        e.site_key(&site("other", None)),
    );
    let g = e.decide(T0, pool, y, 0).unwrap();
    let a = e.on_reply(
        T0,
        g.path,
        &Reply::parse("421 4.7.0 [TSS04] Messages temporarily deferred").unwrap(),
    );
    let until = T0.after(Span::hours(1));
    assert_eq!(a.effect, PathEffect::PathSuspended(until));
    assert_eq!(e.decide(T0, pool, y, 0), Err(Blocked::Until(until)));
    assert!(e.decide(T0, pool, o, 0).is_ok(), "other sites keep going");
    assert!(e.decide(until, pool, y, 0).is_ok());

    let mut cfg = e.config().clone();
    cfg.replies.rules.push(ReplyRule {
        name: "block".into(),
        provider: None,
        code: Some("^554$".into()),
        enhanced: None,
        text: Some("blocked".into()),
        action: RuleAction::SuspendIp,
        duration: Some(Span::hours(2)),
        retry_after: None,
        class: None,
    });
    let mut e = Engine::new(cfg).unwrap();
    let (y, o) = (
        e.site_key(&site("yahoo", Some("yahoo"))),
        e.site_key(&site("other", None)),
    );
    let g = e.decide(T0, pool, o, 0).unwrap();
    let a = e.on_reply(T0, g.path, &Reply::parse("554 IP blocked").unwrap());
    assert_eq!(a.effect, PathEffect::IpSuspended(T0.after(Span::hours(2))));
    assert!(e.decide(T0, pool, y, 0).is_err(), "the whole IP stops");
}

#[test]
fn unmatched_replies_retry_or_bounce_by_code() {
    let mut e = engine_with(vec![ipc(1, None)], Limits::default(), |_| {});
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&site("x", None)));
    let g = e.decide(T0, pool, s, 0).unwrap();
    let a = e.on_reply(T0, g.path, &Reply::parse("550 5.1.1 user unknown").unwrap());
    assert_eq!(a.verdict, Verdict::Bounce);
    assert!(a.classification.unwrap().suppress);
    assert_eq!(a.effect, PathEffect::None);
    let a = e.on_reply(T0, g.path, &Reply::parse("450 4.2.0 greylisted").unwrap());
    assert_eq!(
        a.verdict,
        Verdict::Retry {
            at_least: Span::mins(6)
        }
    );
}

#[test]
fn connections_are_limited_and_released() {
    let limits = Limits {
        max_connections: Some(2),
        messages_per_connection: Some(2),
        ..Limits::default()
    };
    let mut e = engine_with(vec![ipc(1, None)], limits, |_| {});
    let s = e.site_key(&site("x", None));
    let path = e.path_for(ip(1), s).unwrap();
    let mut c1 = e.open_connection(T0, path).unwrap();
    let c2 = e.open_connection(T0, path).unwrap();
    assert_eq!(e.open_connection(T0, path), Err(Blocked::Busy));
    assert!(c1.take_message() && c1.take_message() && !c1.take_message());
    e.on_connection_close(T0, c2);
    assert!(e.open_connection(T0, path).is_ok());
}

#[test]
fn new_connection_rate_is_limited() {
    let limits = Limits {
        new_connections_per_minute: Some(2),
        burst: Some(1),
        ..Limits::default()
    };
    let mut e = engine_with(vec![ipc(1, None)], limits, |_| {});
    let s = e.site_key(&site("x", None));
    let path = e.path_for(ip(1), s).unwrap();
    let c = e.open_connection(T0, path).unwrap();
    e.on_connection_close(T0, c);
    assert_eq!(
        e.open_connection(T0, path),
        Err(Blocked::Until(T0.after(Span::secs(30))))
    );
}

#[test]
fn provider_limit_counts_across_sites() {
    let mut e = engine_with(vec![ipc(1, None)], Limits::default(), |c| {
        c.limits.providers.insert(
            "microsoft".into(),
            Limits {
                messages_per_hour: Some(3),
                ..Limits::default()
            },
        );
    });
    let pool = e.pool_key("p").unwrap();
    let a = e.site_key(&site("outlook", Some("microsoft")));
    let b = e.site_key(&site("office365", Some("microsoft")));
    e.decide(T0, pool, a, 0).unwrap();
    e.decide(T0, pool, b, 0).unwrap();
    e.decide(T0, pool, a, 0).unwrap();
    assert!(e.decide(T0, pool, b, 0).is_err());
    assert!(e.decide(T0, pool, a, 0).is_err());
}

#[test]
fn snapshot_survives_restart_through_json() {
    let mut e = engine_with(
        vec![ipc(1, Some("standard"))],
        Limits {
            messages_per_day: Some(2),
            ..Limits::default()
        },
        |_| {},
    );
    let (pool, s) = (
        e.pool_key("p").unwrap(),
        e.site_key(&site("google", Some("google"))),
    );
    let g = e.decide(T0, pool, s, 0).unwrap();
    e.on_reply(T0, g.path, &Reply::parse("421 4.7.28 x").unwrap());
    e.decide(T0, pool, s, 0).unwrap();
    let conn = e.open_connection(T0, g.path).unwrap();
    let json = serde_json::to_string(&e.snapshot()).unwrap();
    let snap: Snapshot = serde_json::from_str(&json).unwrap();
    let mut r = Engine::restore(e.config().clone(), &snap).unwrap();
    let s2 = r.site_key(&site("google", Some("google")));
    assert!(r.decide(T0, pool, s2, 0).is_err(), "daily count survived");
    let path = r.path_for(ip(1), s2).unwrap();
    assert_eq!(r.path(path).rate_permille, 500);
    assert_eq!(r.path(path).open_connections, 0);
    r.on_connection_close(T0, conn);
    assert_eq!(
        r.path(path).open_connections,
        0,
        "pre-restore connection ignored"
    );
    assert_eq!(r.ip_state(ip(1)).unwrap().warmup.day(), 1);
    assert_eq!(r.snapshot().paths, snap.paths);
}

#[test]
fn empty_pool_or_unknown_is_held() {
    let mut e = engine_with(vec![ipc(1, None)], Limits::default(), |_| {});
    assert!(e.pool_key("nope").is_none());
    e.set_signal(ip(1), Signal::Pause);
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&site("x", None)));
    assert_eq!(e.decide(T0, pool, s, 0), Err(Blocked::Held));
}

#[test]
fn resolver_and_retry_are_reachable_from_engine() {
    let e = engine_with(vec![], Limits::default(), |_| {});
    assert_eq!(
        e.sites()
            .resolve("gmail.com", &["gmail-smtp-in.l.google.com"])
            .name,
        "google"
    );
    let d = e.retry().next(T0, T0, 1, 0, Span(0));
    assert!(matches!(d, RetryDecision::RetryAt { .. }));
}

#[test]
fn decide_via_reuses_idle_or_opens_within_limits() {
    let limits = Limits {
        max_connections: Some(1),
        ..Limits::default()
    };
    let mut e = engine_with(vec![ipc(1, None), ipc(2, None)], limits, |_| {});
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&site("x", None)));
    // No idle connections: each IP opens its one allowed connection, then all are busy.
    let (g1, c1) = e.decide_via(T0, pool, s, 0, |_| false).unwrap();
    let (g2, c2) = e.decide_via(T0, pool, s, 0, |_| false).unwrap();
    assert!(c1.is_some() && c2.is_some());
    assert_ne!(g1.ip, g2.ip);
    assert_eq!(e.decide_via(T0, pool, s, 0, |_| false), Err(Blocked::Busy));
    // An idle connection on the first path qualifies it without opening another.
    let (g3, c3) = e.decide_via(T0, pool, s, 0, |p| p == g1.path).unwrap();
    assert_eq!((g3.path, c3), (g1.path, None));
    e.on_connection_close(T0, c2.unwrap());
    let (g4, c4) = e.decide_via(T0, pool, s, 0, |_| false).unwrap();
    assert_eq!(g4.path, g2.path);
    assert!(c4.is_some());
}

#[test]
fn a_site_signal_pauses_one_site_of_an_ip_and_spares_the_others() {
    let mut e = engine_with(vec![ipc(1, None), ipc(2, None)], Limits::default(), |_| {});
    let pool = e.pool_key("p").unwrap();
    // Set before the site is first seen: applied when its paths are created.
    assert!(e.set_site_signal(ip(1), "bad", Signal::Pause));
    let (bad, good) = (
        e.site_key(&site("bad", None)),
        e.site_key(&site("good", None)),
    );
    for r in 0..50 {
        let grant = e.decide(T0, pool, bad, r).expect("ip 2 still sends to bad");
        assert_eq!(grant.ip, ip(2), "ip 1 is paused toward `bad`");
    }
    let ips: std::collections::HashSet<IpAddr> = (0..50)
        .map(|r| e.decide(T0, pool, good, r).expect("good flows").ip)
        .collect();
    assert!(ips.contains(&ip(1)), "ip 1 still sends to `good`");
    e.set_site_signal(ip(2), "bad", Signal::Pause);
    assert_eq!(
        e.decide(T0, pool, bad, 0),
        Err(Blocked::Held),
        "every IP paused toward `bad`"
    );
    e.set_site_signal(ip(1), "bad", Signal::Ok);
    assert_eq!(
        e.decide(T0, pool, bad, 0).map(|g| g.ip),
        Ok(ip(1)),
        "cleared"
    );
    assert!(
        !e.set_site_signal(ip(9), "bad", Signal::Pause),
        "unknown IP"
    );
}

#[test]
fn a_preferred_ip_is_chosen_while_it_qualifies() {
    let mut e = engine_with(
        vec![ipc(1, None), ipc(2, None), ipc(3, None)],
        Limits {
            messages_per_second: Some(2),
            burst: Some(2),
            ..Limits::default()
        },
        |_| {},
    );
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&site("grey", None)));
    for r in 0..2 {
        let (grant, _) = e
            .decide_via_prefer(T0, pool, s, r, Some(ip(2)), |_| false)
            .expect("a grant");
        assert_eq!(grant.ip, ip(2), "the retry comes back from the same IP");
    }
    let (grant, _) = e
        .decide_via_prefer(T0, pool, s, 0, Some(ip(2)), |_| false)
        .expect("another IP still has budget");
    assert_ne!(
        grant.ip,
        ip(2),
        "once the preferred IP is out of budget, another one sends"
    );
}

/// A large message burst does not throttle new connections below the
/// limit: with 60 a minute and a burst of 50, connections opened as soon
/// as allowed for ten minutes sustain at least three quarters of the limit
/// and never exceed it in any minute. (The message burst used to be the
/// connection burst too, which left 11 a minute once the first 50 were
/// spent.)
#[test]
fn a_large_message_burst_leaves_the_new_connection_rate_near_its_limit() {
    let limits = Limits {
        new_connections_per_minute: Some(60),
        burst: Some(50),
        max_connections: Some(4),
        ..Limits::default()
    };
    let mut e = engine_with(vec![ipc(1, None)], limits, |_| {});
    let s = e.site_key(&site("x", None));
    let path = e.path_for(ip(1), s).unwrap();
    let (mut now, end) = (T0, T0.after(Span::mins(10)));
    let mut opened = Vec::new();
    while now < end {
        match e.open_connection(now, path) {
            Ok(c) => {
                opened.push(now);
                e.on_connection_close(now, c);
            }
            Err(Blocked::Until(t)) => now = t,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let last_nine = opened
        .iter()
        .filter(|t| **t >= T0.after(Span::mins(1)))
        .count();
    assert!(last_nine >= 9 * 45, "{last_nine} in the last nine minutes");
    for (i, t) in opened.iter().enumerate() {
        let in_minute = opened[i..]
            .iter()
            .take_while(|u| u.0 < t.0 + 60_000)
            .count();
        assert!(
            in_minute <= 60,
            "{in_minute} opened in the minute from {t:?}"
        );
    }
}
