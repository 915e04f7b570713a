//! The verdict: a clean run passes; loss, doubles, mismatches, violations
//! and broken warm-up caps each fail with a line that says so.

use std::collections::BTreeMap;
use std::net::IpAddr;

use sluice_proto::v1::EventKind;
use sluice_sim::{AcceptedMessage, LimitKind, Limits, ProviderReport, Report, SourceReport};

use super::*;
use crate::demo::scenario::{PROVIDERS, Plan};
use crate::demo::tally::tests::event;

const DAY_MS: u64 = 86_400_000 * 20_000;
const IPS: [&str; 2] = ["127.0.0.20", "127.0.0.22"];
const WARMING: [&str; 1] = ["127.0.0.22"];

fn source(ip: &str, accepted: u64, peak: u32) -> SourceReport {
    SourceReport {
        source_ip: ip.parse().unwrap(),
        connections: 2,
        accepted,
        deferred: 0,
        rejected: 0,
        violations: BTreeMap::new(),
        peak_per_minute: peak,
    }
}

fn sim_message(id: &str, ip: &str) -> AcceptedMessage {
    AcceptedMessage {
        provider: "gmail".into(),
        server: "127.0.0.2:2525".parse().unwrap(),
        source_ip: ip.parse::<IpAddr>().unwrap(),
        message_id: format!("<{id}@example.com>"),
        mail_from: "bounce@example.com".into(),
        recipients: vec![format!("{id}@gmail.test")],
        size: 100,
        tls: true,
        accepted_at_unix_ms: DAY_MS + 1000,
    }
}

/// A run of `n` messages to gmail, all delivered from the warming IP, plus
/// one bounce from the warmed IP.
struct Run {
    sim: Report,
    tally: Tally,
    accepted: Vec<String>,
    plan: Plan,
}

impl Run {
    fn clean(n: usize) -> Run {
        let mut tally = Tally::default();
        let mut accepted = Vec::new();
        let mut messages = Vec::new();
        for k in 0..n {
            let id = format!("m{k}");
            tally.add(&event(EventKind::Accepted, &id, "", ""));
            tally.add(&event(EventKind::Deferred, &id, IPS[1], "gmail"));
            tally.add(&event(EventKind::Delivered, &id, IPS[1], "gmail"));
            messages.push(sim_message(&id, IPS[1]));
            accepted.push(id);
        }
        tally.add(&event(EventKind::Bounced, "b", IPS[0], "gmail"));
        accepted.push("b".into());
        let limits = Limits {
            connections_per_ip: Some(4),
            messages_per_minute: Some(3000),
            ..Limits::default()
        };
        let sim = Report {
            providers: vec![ProviderReport {
                name: "gmail".into(),
                addr: "127.0.0.2:2525".parse().unwrap(),
                limits,
                sources: vec![source(IPS[0], 0, 1), source(IPS[1], n as u64, 7)],
            }],
            messages,
            feedback: Vec::new(),
        };
        // Day 1 cap 20, site cap 12: 2n attempts fit for n <= 6.
        Run {
            sim,
            tally,
            accepted,
            plan: Plan::for_messages(10),
        }
    }

    fn outcome(&self) -> Outcome {
        analyse(&Inputs {
            sim: &self.sim,
            tally: &self.tally,
            accepted: &self.accepted,
            providers: &PROVIDERS,
            ips: &IPS,
            warming: &WARMING,
            plan: &self.plan,
        })
    }
}

#[test]
fn a_clean_run_passes_with_its_numbers() {
    let o = Run::clean(5).outcome();
    assert!(o.passed(), "{:?}", o.failures);
    assert_eq!(o.accepted, 6);
    assert_eq!(
        (o.totals.delivered, o.totals.bounced, o.totals.deferred),
        (5, 1, 5)
    );
    let gmail = &o.providers[0];
    assert_eq!(
        (gmail.delivered, gmail.events.bounced, gmail.events.deferred),
        (5, 1, 5)
    );
    assert_eq!((gmail.peak_per_minute, gmail.isp_limit), (7, Some(3000)));
    assert_eq!(gmail.sender_limit, 2695);
    let warming = o.ips[1].warmup.as_ref().expect("warming IP is checked");
    assert_eq!((warming.day, warming.cap, warming.sent), (1, Some(20), 10));
    assert_eq!((warming.busiest_site, warming.site_cap), (10, Some(12)));
    assert!(warming.held);
    assert!(o.ips[0].warmup.is_none());
    assert_eq!(o.ips[1].sites[0].peak_per_minute, 7);
}

#[test]
fn a_violation_fails_the_run() {
    let mut run = Run::clean(5);
    let s = &mut run.sim.providers[0].sources[1];
    s.violations.insert(LimitKind::MessagesPerMinute, 3);
    let o = run.outcome();
    assert!(!o.passed());
    assert!(
        o.failures[0].contains("3 limit violations"),
        "{:?}",
        o.failures
    );
    assert!(
        o.failures[0].contains("messages_per_minute=3"),
        "{:?}",
        o.failures
    );
    assert_eq!(o.providers[0].violations, 3);
}

#[test]
fn a_broken_warm_up_cap_fails_the_run() {
    // 8 messages, 16 attempts: over the site cap of 12 (not the daily 20).
    let o = Run::clean(8).outcome();
    let w = o.ips[1].warmup.as_ref().expect("checked");
    assert!(!w.held);
    assert!(
        o.failures
            .iter()
            .any(|f| f.contains("warm-up cap broken on 127.0.0.22")),
        "{:?}",
        o.failures
    );
    // 11 messages: over the daily cap as well.
    let o = Run::clean(11).outcome();
    assert_eq!(o.ips[1].warmup.as_ref().map(|w| w.sent), Some(22));
    assert!(!o.passed());
}

#[test]
fn a_lost_message_fails_the_run() {
    let mut run = Run::clean(3);
    run.accepted.push("lost".into());
    let o = run.outcome();
    assert_eq!(o.failures.len(), 1, "{:?}", o.failures);
    assert!(o.failures[0].starts_with("1 accepted messages have no final event"));
    assert!(o.failures[0].contains("lost"));
}

#[test]
fn two_final_events_fail_the_run() {
    let mut run = Run::clean(3);
    run.tally
        .add(&event(EventKind::Delivered, "m1", IPS[1], "gmail"));
    let o = run.outcome();
    assert!(
        o.failures
            .iter()
            .any(|f| f.contains("more than one final event"))
    );
}

#[test]
fn the_simulator_must_hold_exactly_the_delivered_messages() {
    let mut run = Run::clean(3);
    run.sim.messages.pop();
    run.sim.messages.push(sim_message("stranger", IPS[1]));
    let o = run.outcome();
    assert!(
        o.failures
            .iter()
            .any(|f| f.contains("no provider accepted them, e.g. m2"))
    );
    assert!(
        o.failures
            .iter()
            .any(|f| f.contains("without a delivered event, e.g. stranger"))
    );
}

#[test]
fn duplicates_are_counted_and_message_ids_mapped() {
    let mut run = Run::clean(3);
    run.sim.messages.push(sim_message("m0", IPS[1]));
    let o = run.outcome();
    assert_eq!(o.duplicates, 1);
    assert!(
        o.passed(),
        "a duplicate is reported, not failed: {:?}",
        o.failures
    );
    assert_eq!(sim_message_id("<01ABC@example.com>"), "01ABC");
    assert_eq!(sim_message_id("fnv64:12"), "fnv64:12");
}
