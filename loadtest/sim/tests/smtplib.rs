//! The simulator against an SMTP client that is not ours: Python's smtplib.

mod common;

use common::{code, connect, ip, message, scenario, smtplib, start, text};
use serde_json::json;
use sluice_sim::LimitKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_message_is_recorded_with_its_source_ip() {
    let (sim, addr) = start(scenario("generic", "")).await;
    let results = smtplib(json!([
        connect(addr, "127.0.0.21"),
        {"op": "ehlo"},
        message("first@origin.test", "user@example.test"),
        {"op": "quit"},
    ]))
    .await;
    assert_eq!(code(&results[0]), 220);
    assert_eq!(code(&results[2]), 250, "{results:?}");
    let report = sim.shutdown().await;
    assert_eq!(report.messages.len(), 1);
    let m = &report.messages[0];
    assert_eq!(m.message_id, "<first@origin.test>");
    assert_eq!(m.source_ip, ip("127.0.0.21"));
    assert_eq!(m.recipients, ["user@example.test"]);
    assert_eq!((m.provider.as_str(), m.server), ("isp", addr));
    assert_eq!(report.source("isp", ip("127.0.0.21")).unwrap().accepted, 1);
    assert_eq!(report.total_violations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_sender_has_no_violations() {
    let limits = "[provider.limits]\nconnections_per_ip = 1\nmessages_per_connection = 2\n\
                  messages_per_minute = 4\n";
    let (sim, addr) = start(scenario("gmail", limits)).await;
    let mut steps = Vec::new();
    for conn in 0..2 {
        steps.push(connect(addr, "127.0.0.22"));
        steps.push(json!({"op": "ehlo"}));
        for n in 0..2 {
            steps.push(message(
                &format!("m{conn}{n}@origin.test"),
                "u@example.test",
            ));
        }
        steps.push(json!({"op": "quit"}));
    }
    let results = smtplib(json!(steps)).await;
    let codes: Vec<u64> = [2, 3, 7, 8].iter().map(|&i| code(&results[i])).collect();
    assert_eq!(codes, [250; 4], "{results:?}");
    assert_eq!(
        sim.snapshot().messages.len(),
        4,
        "a snapshot sees them before shutdown"
    );
    let report = sim.shutdown().await;
    assert_eq!(report.total_violations(), 0);
    assert_eq!(report.messages.len(), 4);
    assert!(report.duplicates().is_empty());
    assert_eq!(
        report
            .source("isp", ip("127.0.0.22"))
            .unwrap()
            .peak_per_minute,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_connection_limit_gives_the_deferral_and_a_violation() {
    let limits = "[provider.limits]\nmessages_per_connection = 2\n";
    let (sim, addr) = start(scenario("yahoo", limits)).await;
    let results = smtplib(json!([
        connect(addr, "127.0.0.23"),
        {"op": "ehlo"},
        message("a@origin.test", "u@example.test"),
        message("b@origin.test", "u@example.test"),
        message("c@origin.test", "u@example.test"),
    ]))
    .await;
    assert_eq!(code(&results[3]), 250);
    assert_eq!(code(&results[4]), 421, "{results:?}");
    assert!(text(&results[4]).starts_with("4.7.0 Max message per connection"));
    let report = sim.shutdown().await;
    let source = report.source("isp", ip("127.0.0.23")).unwrap();
    assert_eq!(
        source.violations.get(&LimitKind::MessagesPerConnection),
        Some(&1)
    );
    assert_eq!((source.accepted, source.deferred), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_minute_limit_gives_the_deferral_and_a_violation() {
    let limits = "[provider.limits]\nmessages_per_minute = 3\n";
    let (sim, addr) = start(scenario("gmail", limits)).await;
    let mut steps = Vec::new();
    for n in 0..4 {
        steps.push(connect(addr, "127.0.0.24"));
        steps.push(json!({"op": "ehlo"}));
        steps.push(message(&format!("r{n}@origin.test"), "u@example.test"));
    }
    let results = smtplib(json!(steps)).await;
    let last = &results[11];
    assert_eq!(code(&results[8]), 250);
    assert_eq!(code(last), 421, "{results:?}");
    assert!(text(last).starts_with("4.7.28 [127.0.0.24] Our system has detected an unusual rate"));
    let report = sim.shutdown().await;
    let source = report.source("isp", ip("127.0.0.24")).unwrap();
    assert_eq!(
        source.violations.get(&LimitKind::MessagesPerMinute),
        Some(&1)
    );
    assert_eq!(source.peak_per_minute, 3);
    assert!(report.source("isp", ip("127.0.0.25")).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connection_limit_refuses_the_second_connection() {
    let limits = "[provider.limits]\nconnections_per_ip = 1\n";
    let (sim, addr) = start(scenario("generic", limits)).await;
    let mut second = connect(addr, "127.0.0.26");
    second["conn"] = json!("second");
    let mut other_ip = connect(addr, "127.0.0.27");
    other_ip["conn"] = json!("other");
    let results =
        smtplib(json!([connect(addr, "127.0.0.26"), {"op": "ehlo"}, second, other_ip])).await;
    assert_eq!(code(&results[2]), 421, "{results:?}");
    assert!(text(&results[2]).starts_with("4.7.0 Too many connections from 127.0.0.26"));
    assert_eq!(
        code(&results[3]),
        220,
        "another source IP has its own limit"
    );
    let report = sim.shutdown().await;
    let source = report.source("isp", ip("127.0.0.26")).unwrap();
    assert_eq!(source.violations.get(&LimitKind::Connections), Some(&1));
    assert_eq!(source.connections, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_foreign_domain_are_refused() {
    let (sim, addr) = start(scenario("generic", "")).await;
    let results = smtplib(json!([
        connect(addr, "127.0.0.28"),
        {"op": "ehlo"},
        {"op": "mail", "from": "sender@origin.test"},
        {"op": "rcpt", "to": "nobody@example.test"},
        {"op": "rcpt", "to": "someone@elsewhere.test"},
        {"op": "quit"},
    ]))
    .await;
    assert_eq!(code(&results[3]), 550);
    assert!(text(&results[3]).starts_with("5.1.1"), "{results:?}");
    assert_eq!(code(&results[4]), 550);
    assert_eq!(text(&results[4]), "5.7.1 relaying denied");
    let report = sim.shutdown().await;
    assert_eq!(report.source("isp", ip("127.0.0.28")).unwrap().rejected, 2);
    assert!(report.messages.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greylisting_defers_then_accepts_after_the_delay() {
    let (sim, addr) = start(scenario("generic", "greylist_secs = 1\n")).await;
    let results = smtplib(json!([
        connect(addr, "127.0.0.29"),
        {"op": "ehlo"},
        message("g@origin.test", "u@example.test"),
        {"op": "quit"},
        {"op": "sleep", "secs": 1.1},
        connect(addr, "127.0.0.29"),
        {"op": "ehlo"},
        message("g@origin.test", "u@example.test"),
    ]))
    .await;
    assert_eq!(code(&results[2]), 451, "{results:?}");
    assert!(text(&results[2]).starts_with("4.7.1 greylisted"));
    assert_eq!(code(&results[7]), 250, "{results:?}");
    let report = sim.shutdown().await;
    assert_eq!(report.messages.len(), 1);
    let source = report.source("isp", ip("127.0.0.29")).unwrap();
    assert_eq!((source.deferred, source.accepted), (1, 1));
    assert_eq!(
        report.total_violations(),
        0,
        "greylisting is not a violation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_upgrades_and_the_message_is_marked_tls() {
    let (sim, addr) = start(scenario("outlook", "")).await;
    let results = smtplib(json!([
        connect(addr, "127.0.0.30"),
        {"op": "ehlo"},
        {"op": "starttls"},
        {"op": "ehlo"},
        message("tls@origin.test", "u@example.test"),
        {"op": "quit"},
    ]))
    .await;
    assert!(text(&results[1]).contains("STARTTLS"));
    assert_eq!(code(&results[2]), 220, "{results:?}");
    assert!(
        results[2]["tls_version"]
            .as_str()
            .unwrap()
            .starts_with("TLS")
    );
    assert!(!text(&results[3]).contains("STARTTLS"), "not offered twice");
    assert_eq!(code(&results[4]), 250);
    let report = sim.shutdown().await;
    assert!(report.messages[0].tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_are_answered_in_order() {
    let (sim, addr) = start(scenario("generic", "")).await;
    let batch = "MAIL FROM:<s@origin.test>\r\nRCPT TO:<a@example.test>\r\n\
                 RCPT TO:<nobody@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n";
    let results = smtplib(json!([
        connect(addr, "127.0.0.31"),
        {"op": "ehlo"},
        {"op": "raw", "text": batch, "replies": 5},
        {"op": "raw", "text": "Message-ID: <p@origin.test>\r\n\r\nhi\r\n.\r\nNOOP\r\n", "replies": 2},
        {"op": "quit"},
    ]))
    .await;
    assert!(text(&results[1]).contains("PIPELINING"));
    let codes: Vec<u64> = results[2]["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(code)
        .collect();
    assert_eq!(codes, [250, 250, 550, 250, 354], "{results:?}");
    let after: Vec<u64> = results[3]["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(code)
        .collect();
    assert_eq!(after, [250, 250]);
    let report = sim.shutdown().await;
    assert_eq!(
        report.messages[0].recipients,
        ["a@example.test", "b@example.test"]
    );
}
