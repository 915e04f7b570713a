//! The feedback loop against a receiver that behaves like a mailbox
//! provider (issue #15, "Done when"): the ISP simulator accepts every
//! message from the real `sluice dev`, then mails a delayed bounce (RFC 3464,
//! to the VERP return path) for a share of the recipients and a spam
//! complaint (ARF, to the feedback address) for another share, to dev's
//! inbound MX. Every report is taken; each recipient ends suppressed for the
//! right reason with the right event in its message's history; the next
//! submission to a bounced recipient is refused; the tenant's webhook (the
//! example receiver, verifying every signature) gets each `bounced` and
//! `complained` event; and the tenant's stats and reputation count the
//! bounces and complaints.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{
    EventKind, GetMessageRequest, GetReputationRequest, GetStatsRequest, StatsDimension,
};
use sluice_testkit::cluster::free_addr;
use sluice_testkit::dev::{dev_config, send_request, start_dev, wait_for_suppressions};
use sluice_testkit::sender::{INBOX, start_sim};
use sluice_testkit::webhooks::{received, receiver, register};

const FBL: &str = "fbl@sluice.test";
const RECIPIENTS: usize = 60;

fn scenario() -> String {
    format!(
        r#"{INBOX}
[provider.feedback]
bounce_share = 0.2
complaint_share = 0.1
complaint_to = "{FBL}"
delay_ms = 300
"#
    )
}

const EXTRA: &str = r#"
[recorder.reputation]
interval = "1s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_and_complaints_from_the_simulator_suppress_and_count() {
    let text = scenario();
    let sim = start_sim(&text).await;
    let feedback = sluice_sim::Scenario::parse(&text)
        .expect("scenario")
        .providers[0]
        .feedback
        .clone()
        .expect("feedback table");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    let config = dev_config(dir.path(), &sim, "inbox", "inbox.test", EXTRA).replace(
        "[inbound]\n",
        &format!("[inbound]\nfeedback_addresses = [\"{FBL}\"]\n"),
    );
    std::fs::write(&file, config).expect("write");
    let dev = start_dev(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &file).await;
    let port = free_addr().port();
    let _hook = receiver(dir.path(), port, 0).await;
    register(&dev.http, "feedback", port, &["bounced", "complained"]).await;
    sim.send_feedback_to(dev.inbound.parse().expect("inbound address"));
    let token = std::fs::read_to_string(dir.path().join("data/control.token")).expect("token");
    let token = token.trim();

    // Which recipients the simulator will bounce or complain about is fixed
    // by their addresses; both kinds must be in the run.
    let all: Vec<String> = (0..RECIPIENTS)
        .map(|i| format!("reader{i}@inbox.test"))
        .collect();
    let expected: HashMap<&str, &str> = all
        .iter()
        .filter_map(|r| feedback.kind_for(r).map(|k| (r.as_str(), k)))
        .collect();
    let count = |kind: &str| expected.values().filter(|k| **k == kind).count();
    let (bounces, complaints) = (count("bounce"), count("complaint"));
    assert!(bounces > 0 && complaints > 0, "{expected:?}");

    let mut ingest = IngestClient::connect(dev.ingest.clone())
        .await
        .expect("ingest");
    let sent = ingest
        .send(send_request("news@sluice.test", &all, "spring news"))
        .await
        .expect("send")
        .into_inner();
    let ids: HashMap<String, String> = sent
        .recipients
        .iter()
        .map(|r| (r.address.clone(), r.message_id.clone()))
        .collect();
    assert_eq!(ids.len(), RECIPIENTS);

    let report = wait_for_feedback(&sim, expected.len()).await;
    for sent in &report.feedback {
        assert!(sent.taken(), "the MX refused a report: {sent:?}");
        assert_eq!(
            expected.get(sent.recipient.as_str()),
            Some(&sent.kind.as_str())
        );
    }
    let reported: HashSet<&str> = report
        .feedback
        .iter()
        .map(|f| f.recipient.as_str())
        .collect();
    assert_eq!(
        reported.len(),
        expected.len(),
        "each recipient reported once"
    );

    let mut control =
        sluice_control_client::client(&format!("http://{}", dev.control), Some(token))
            .await
            .expect("control");
    let reasons: Vec<(&str, &str)> = expected
        .iter()
        .map(|(r, k)| {
            (
                *r,
                if *k == "bounce" {
                    "hard_bounce"
                } else {
                    "complaint"
                },
            )
        })
        .collect();
    wait_for_suppressions(&mut control, &reasons, Duration::from_secs(60)).await;

    let mut query = sluice_testkit::query::client(&dev.query, Some(token))
        .await
        .expect("query");
    for (recipient, kind) in &expected {
        let want = if *kind == "bounce" {
            EventKind::Bounced
        } else {
            EventKind::Complained
        };
        let id = ids[*recipient].clone();
        let status = query
            .get_message(GetMessageRequest { message_id: id })
            .await
            .expect("message")
            .into_inner();
        let event = status.history.iter().find(|e| e.kind() == want);
        let event = event.unwrap_or_else(|| panic!("no {want:?} event for {recipient}"));
        assert_eq!(
            (event.tenant.as_str(), event.recipient.as_str()),
            ("dev", *recipient)
        );
        assert!(
            status
                .history
                .iter()
                .any(|e| e.kind() == EventKind::Delivered)
        );
    }

    // Every report reached the tenant's webhook, signed (the receiver keeps
    // only posts whose signature holds).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let posted: HashSet<(String, String)> = received(dir.path())
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").to_owned(),
                    e["recipient"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let missing: Vec<_> = expected
            .iter()
            .map(|(r, k)| {
                (
                    if *k == "bounce" {
                        "bounced"
                    } else {
                        "complained"
                    },
                    *r,
                )
            })
            .filter(|(k, r)| !posted.contains(&(k.to_string(), r.to_string())))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never posted to the webhook: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let bounced = expected
        .iter()
        .find(|(_, k)| **k == "bounce")
        .expect("a bounce")
        .0;
    let request = send_request("news@sluice.test", &[bounced.to_string()], "more news");
    let again = ingest.send(request).await.expect("send").into_inner();
    assert!(again.recipients[0].suppressed, "{again:?}");

    let day = sluice_recorder::client::today();
    let rows = query
        .get_stats(GetStatsRequest {
            dimension: StatsDimension::Tenant.into(),
            key: "dev".into(),
            from_day: day.clone(),
            to_day: day,
        })
        .await
        .expect("stats")
        .into_inner()
        .rows;
    let sum = |f: fn(&sluice_proto::v1::StatsRow) -> u64| rows.iter().map(f).sum::<u64>();
    assert_eq!(sum(|r| r.complained), complaints as u64, "{rows:?}");
    assert_eq!(sum(|r| r.bounced), bounces as u64, "{rows:?}");
    assert_eq!(sum(|r| r.delivered), RECIPIENTS as u64, "{rows:?}");

    // The tenant's reputation: complaints over deliveries, hard bounces over
    // sent mail (docs/recorder.md).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reputation = query
            .get_reputation(GetReputationRequest {
                tenant: "dev".into(),
                ..Default::default()
            })
            .await
            .expect("reputation")
            .into_inner();
        // Every bounce here came by mail after its delivery (a late bounce),
        // so each message counts as sent once. A scoring run may have seen
        // only part of the feedback (a CI run read 10 of the complaints):
        // wait for one that saw it all.
        let row = reputation.tenants.iter().find(|t| t.tenant == "dev");
        let delivered = RECIPIENTS as f64;
        let complete = |r: &&sluice_proto::v1::TenantReputationRow| {
            r.sent == RECIPIENTS as u64
                && (r.complaint_rate - complaints as f64 / delivered).abs() < 1e-9
                && (r.hard_bounce_rate - bounces as f64 / r.sent as f64).abs() < 1e-9
        };
        if row.filter(complete).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tenant's reputation never counted {complaints} complaints and {bounces} \
             hard bounces over {RECIPIENTS} messages: {reputation:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let report = sim.shutdown().await;
    assert_eq!(report.total_violations(), 0);
}

/// The simulator's report once `count` reports were mailed.
async fn wait_for_feedback(sim: &sluice_sim::SimHandle, count: usize) -> sluice_sim::Report {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let report = sim.snapshot();
        if report.feedback.len() >= count {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} reports mailed ({} messages accepted)",
            report.feedback.len(),
            report.messages.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
