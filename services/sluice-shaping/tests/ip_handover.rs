//! Moving one source IP's state between engines (`Engine::ip_snapshot`,
//! `Engine::absorb_ip`): what the next owner of an IP's lease loads.

use std::net::IpAddr;

use sluice_shaping::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

const T0: Millis = Millis(1_700_000_000_000);

/// Two warming IPs (cap 3 on day 1) and a provider with an hourly limit.
fn engine() -> Engine {
    let mut cfg = EngineConfig {
        ips: (1..=2)
            .map(|i| IpConfig {
                address: ip(i),
                pool: "p".into(),
                warmup_plan: Some("tiny".into()),
            })
            .collect(),
        ..EngineConfig::default()
    };
    cfg.warmup.plans.insert(
        "tiny".into(),
        WarmupPlan {
            days: vec![PlanDay::daily(3), PlanDay::daily(10)],
        },
    );
    cfg.warmup.max_site_share_percent = 100;
    cfg.limits.default = Limits {
        messages_per_minute: Some(1_000_000),
        burst: Some(1_000_000),
        max_connections: Some(2),
        new_connections_per_minute: Some(1_000_000),
        ..Limits::default()
    };
    cfg.limits.providers.insert(
        "google".into(),
        Limits {
            messages_per_hour: Some(100),
            ..Limits::default()
        },
    );
    Engine::new(cfg).unwrap()
}

fn google() -> Site {
    Site::new("google", Some("google"))
}

/// Sends `n` messages to google on `e`, all from `from` (the other IP paused).
fn send(e: &mut Engine, from: IpAddr, n: usize) -> usize {
    let other = if from == ip(1) { ip(2) } else { ip(1) };
    e.set_signal(other, Signal::Pause);
    let (pool, s) = (e.pool_key("p").unwrap(), e.site_key(&google()));
    let sent = (0..n)
        .filter(|&r| e.decide(T0, pool, s, r as u64).is_ok())
        .count();
    e.set_signal(other, Signal::Ok);
    sent
}

#[test]
fn an_ip_moves_with_its_counters_warmup_and_suspensions_and_nothing_else() {
    let mut a = engine();
    assert_eq!(send(&mut a, ip(1), 2), 2);
    // A deferral that suspends the (ip 1, yahoo) path for an hour.
    let yahoo = a.site_key(&Site::new("yahoo", Some("yahoo")));
    let path = a.path_for(ip(1), yahoo).unwrap();
    let until = T0.after(Span::hours(1));
    let reply = Reply::parse("421 4.7.0 [TSS04] Messages temporarily deferred").unwrap();
    assert_eq!(
        a.on_reply(T0, path, &reply).effect,
        PathEffect::PathSuspended(until)
    );

    let mut b = engine();
    assert_eq!(
        send(&mut b, ip(2), 3),
        3,
        "b's own IP, to see it is untouched"
    );
    let before_other = b.ip_snapshot(ip(2)).unwrap();

    let part = a.ip_snapshot(ip(1)).unwrap();
    assert_eq!(part.ips.len(), 1);
    assert!(part.paths.iter().all(|p| p.ip == ip(1)));
    assert!(part.providers.iter().all(|p| p.ip == ip(1)));
    let json = serde_json::to_vec(&part).unwrap();
    let part: Snapshot = serde_json::from_slice(&json).unwrap();
    assert!(b.absorb_ip(&part));

    let moved = b.ip_snapshot(ip(1)).unwrap();
    assert_eq!(moved.ips, part.ips, "warm-up day and counts, suspension");
    assert_eq!(moved.paths, part.paths, "path counters, rates, suspensions");
    assert_eq!(moved.providers, part.providers, "provider counters");
    assert_eq!(b.ip_state(ip(1)).unwrap().warmup.day(), 1);
    assert_eq!(
        b.ip_snapshot(ip(2)).unwrap(),
        before_other,
        "other IP untouched"
    );
    let y = b.site_key(&Site::new("yahoo", Some("yahoo")));
    let pool = b.pool_key("p").unwrap();
    b.set_signal(ip(2), Signal::Pause);
    assert_eq!(
        b.decide(T0, pool, y, 0),
        Err(Blocked::Until(until)),
        "suspension carried"
    );
    // Day 1's cap is 3 and a sent 2: b may send one more from ip 1.
    let s = b.site_key(&google());
    let sent = (0..5).filter(|&r| b.decide(T0, pool, s, r).is_ok()).count();
    assert_eq!(sent, 1, "the cap counts what a sent");
}

#[test]
fn a_fresh_engine_absorbing_a_used_ip_keeps_the_cap_and_unknown_ips_are_refused() {
    let mut a = engine();
    assert_eq!(send(&mut a, ip(1), 5), 3, "cap 3 on day 1");
    let mut b = engine();
    assert!(b.absorb_ip(&a.ip_snapshot(ip(1)).unwrap()));
    assert_eq!(send(&mut b, ip(1), 5), 0, "nothing more on day 1");
    assert!(a.ip_snapshot(ip(9)).is_none());
    let mut stranger = a.ip_snapshot(ip(1)).unwrap();
    stranger.ips[0].address = ip(9);
    assert!(!b.absorb_ip(&stranger), "an IP not configured here");
}

#[test]
fn absorbing_keeps_open_connections_and_path_ids_valid() {
    let mut b = engine();
    let s = b.site_key(&google());
    let path = b.path_for(ip(1), s).unwrap();
    let c1 = b.open_connection(T0, path).unwrap();
    let _c2 = b.open_connection(T0, path).unwrap();
    assert_eq!(b.open_connection(T0, path), Err(Blocked::Busy), "max 2");

    // Another engine's state for ip 1: it used a site b never saw, too.
    let mut a = engine();
    assert_eq!(send(&mut a, ip(1), 1), 1);
    let yahoo = a.site_key(&Site::new("yahoo", None));
    a.path_for(ip(1), yahoo).unwrap();
    assert!(b.absorb_ip(&a.ip_snapshot(ip(1)).unwrap()));

    assert_eq!(b.path(path).open_connections, 2, "open connections kept");
    assert_eq!(
        b.open_connection(T0, path),
        Err(Blocked::Busy),
        "still counted"
    );
    b.on_connection_close(T0, c1);
    assert_eq!(b.path(path).open_connections, 1, "a held connection closes");
    assert!(b.open_connection(T0, path).is_ok());
    let yahoo_b = b.site_key(&Site::new("yahoo", None));
    let y = b.path_for(ip(1), yahoo_b).unwrap();
    assert_eq!(b.path(y).open_connections, 0, "a path created by absorbing");
    assert_eq!(
        b.ip_snapshot(ip(1)).unwrap().paths.len(),
        a.ip_snapshot(ip(1)).unwrap().paths.len()
    );
}

#[test]
fn paths_the_stored_state_does_not_name_start_fresh_and_signals_stay() {
    let mut b = engine();
    assert_eq!(send(&mut b, ip(1), 3), 3);
    b.set_signal(ip(1), Signal::Pause);
    let a = engine();
    assert!(b.absorb_ip(&a.ip_snapshot(ip(1)).unwrap()));
    assert_eq!(
        b.ip_state(ip(1)).unwrap().signal,
        Signal::Pause,
        "the caller's gate stays"
    );
    b.set_signal(ip(1), Signal::Ok);
    assert_eq!(
        send(&mut b, ip(1), 5),
        3,
        "the stored state says nothing sent yet"
    );
}
