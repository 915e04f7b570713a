//! The in-process API: the shipped scenario, pre-bound listeners, snapshots.

mod common;

use std::path::Path;

use common::{code, connect, ip, message, smtplib, text};
use serde_json::json;
use sluice_sim::{Scenario, SimError, Simulator};
use tokio::net::TcpListener;

const FIVE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/five-providers.toml"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_scenario_serves_all_five_providers() {
    let mut scenario = Scenario::load(Path::new(FIVE)).expect("shipped scenario loads");
    for p in &mut scenario.providers {
        p.listen.set_port(0);
        p.banner_delay_ms = 0;
        p.data_reply_delay_ms = 0;
        p.temp_failure_rate = 0.0;
        p.perm_failure_rate = 0.0;
    }
    let sim = Simulator::start(scenario).await.expect("starts");
    let addrs = sim.addrs();
    let hosts: Vec<String> = addrs.iter().map(|(_, a)| a.ip().to_string()).collect();
    assert_eq!(
        hosts,
        [
            "127.0.0.2",
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.5",
            "127.0.0.6"
        ]
    );
    let outlook = sim.addr("outlook").expect("outlook is bound");
    let mut steps = vec![connect(outlook, "127.0.0.41"), json!({"op": "ehlo"})];
    for n in 0..6 {
        steps.push(message(
            &format!("o{n}@origin.test"),
            "someone@hotmail.test",
        ));
    }
    let results = smtplib(json!(steps)).await;
    assert_eq!(
        code(&results[6]),
        250,
        "five per connection are fine: {results:?}"
    );
    assert_eq!(code(&results[7]), 421, "{results:?}");
    assert!(text(&results[7]).starts_with("RP-001"));
    let report = sim.shutdown().await;
    assert_eq!(report.providers.len(), 5);
    let source = report
        .source("outlook", ip("127.0.0.41"))
        .expect("outlook saw the sender");
    assert_eq!(source.accepted, 5);
    assert_eq!(report.total_violations(), 1);
}

#[tokio::test]
async fn prebound_listeners_are_used_and_counted() {
    let scenario = common::scenario("generic", "");
    let listener = TcpListener::bind("127.0.0.4:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sim = Simulator::start_with_listeners(scenario.clone(), vec![listener]).expect("starts");
    assert_eq!(sim.addr("isp"), Some(addr));
    assert!(sim.snapshot().messages.is_empty());
    let report = sim.shutdown().await;
    assert_eq!(report.providers[0].addr, addr);
    let none = Simulator::start_with_listeners(scenario, Vec::new());
    assert!(matches!(none, Err(SimError::Invalid(msg)) if msg.contains("0 listeners for 1")));
}
