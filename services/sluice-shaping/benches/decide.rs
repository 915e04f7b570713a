//! Scheduling decisions per second on one core.
//!
//! Method: one engine, one pool of 16 source IPs (4 of them warming on the built-in plan),
//! 50 sites (the first 10 of them in 5 two-site providers with provider-wide limits), built-in
//! default limits lifted high enough that most decisions grant. Each iteration advances a
//! simulated clock by 50 µs-worth of milliseconds (1 ms every 20 decisions), picks a site
//! round-robin and calls `Engine::decide` with a fresh pseudo-random value. Both granted and
//! blocked decisions count. Criterion reports time per decision; decisions/s = 1 / time.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_shaping::{Engine, EngineConfig, IpConfig, Limits, Millis, Site};

fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_owned(), |m| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores available, measured on 1 core")
}

fn engine() -> (
    Engine,
    sluice_shaping::PoolKey,
    Vec<sluice_shaping::SiteKey>,
) {
    let mut cfg = EngineConfig::default();
    for i in 0..16u8 {
        let plan = (i < 4).then(|| "standard".to_owned());
        cfg.ips.push(IpConfig {
            address: IpAddr::from([10, 0, 0, i]),
            pool: "bulk".into(),
            warmup_plan: plan,
        });
    }
    cfg.limits.default = Limits {
        messages_per_second: Some(5_000),
        messages_per_minute: Some(100_000),
        burst: Some(100),
        ..Limits::default()
    };
    for p in 0..5 {
        cfg.limits.providers.insert(
            format!("prov{p}"),
            Limits {
                messages_per_minute: Some(500_000),
                ..Limits::default()
            },
        );
    }
    let mut e = Engine::new(cfg).unwrap();
    let pool = e.pool_key("bulk").unwrap();
    let sites = (0..50)
        .map(|i| {
            let provider = (i < 10).then(|| format!("prov{}", i / 2));
            e.site_key(&Site::new(format!("site{i}"), provider.as_deref()))
        })
        .collect();
    (e, pool, sites)
}

fn bench(c: &mut Criterion) {
    println!(
        "shaping bench: Engine::decide, 16 IPs (4 warming), 50 sites, 5 providers; {}",
        machine()
    );
    let (mut e, pool, sites) = engine();
    let mut n: u64 = 0;
    let mut rnd: u64 = 0x2545_F491_4F6C_DD1D;
    let mut group = c.benchmark_group("shaping");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decide", |b| {
        b.iter(|| {
            n += 1;
            rnd ^= rnd << 13;
            rnd ^= rnd >> 7;
            rnd ^= rnd << 17;
            let now = Millis(1_700_000_000_000 + n / 20);
            black_box(e.decide(now, pool, sites[(n % 50) as usize], rnd))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
