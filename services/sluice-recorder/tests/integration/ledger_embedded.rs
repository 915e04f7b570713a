//! The ledger conformance suite against the embedded ledger (a tempdir per
//! test), plus what only it has to prove itself: TTL expiry, reopening, and
//! `kill -9` losing nothing acknowledged.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_proto::v1::EventKind;
use sluice_recorder::record::{CounterKey, Deltas, Granularity};
use sluice_recorder::{AnyLedger, Claim, EmbeddedLedger, Ledger};

use crate::common::{add, claim_one, event, now_secs, pos, rows};
use crate::conformance;

fn open(dir: &std::path::Path) -> EmbeddedLedger {
    EmbeddedLedger::open(dir, 30, 7).expect("open the embedded ledger")
}

#[tokio::test]
async fn embedded_ledger_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = open(dir.path());
    conformance::all(&ledger).await;
    conformance::all(&AnyLedger::from(ledger)).await;
}

#[tokio::test]
async fn embedded_ledger_keeps_everything_across_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = open(dir.path());
    let fixture = conformance::write_fixture(&ledger).await;
    let err = EmbeddedLedger::open(dir.path(), 30, 7).expect_err("second open");
    assert!(err.to_string().contains("data_dir"), "{err}");
    drop(ledger);
    conformance::check_fixture(&open(dir.path()), &fixture).await;
}

#[tokio::test]
async fn embedded_rows_expire_after_their_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ttl = Duration::from_millis(400);
    let ledger = EmbeddedLedger::open_with_ttls(dir.path(), ttl, ttl).expect("open");
    let e = event(EventKind::Delivered, "m-ttl", "192.0.2.1", "gmail");
    rows(&ledger, &e, now_secs()).await;
    assert_eq!(claim_one(&ledger, &e, pos(0, 1)).await, Claim::New);
    assert_eq!(ledger.history("m-ttl").await.expect("history").len(), 1);
    assert_eq!(claim_one(&ledger, &e, pos(0, 2)).await, Claim::Duplicate);
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(ledger.history("m-ttl").await.expect("history").is_empty());
    // An expired claim is gone: the event counts again, as on Cassandra.
    assert_eq!(claim_one(&ledger, &e, pos(0, 2)).await, Claim::New);
    // History and campaign row purged; the renewed claim is kept.
    assert_eq!(ledger.purge_expired().expect("purge"), 2);
    assert_eq!(claim_one(&ledger, &e, pos(0, 3)).await, Claim::Duplicate);
    drop(ledger);
    let reopened = EmbeddedLedger::open_with_ttls(dir.path(), ttl, ttl).expect("reopen");
    assert!(reopened.history("m-ttl").await.expect("history").is_empty());
}

const DIR_ENV: &str = "SLUICE_RECORDER_CRASH_DIR";
const KILL_AFTER: usize = 150;

fn counter(ip: &str) -> CounterKey {
    CounterKey {
        granularity: Granularity::Daily,
        scope: "ip",
        key: ip.into(),
        day: "2026-03-01".into(),
        hour: String::new(),
        detail: "gmail".into(),
    }
}

/// The child of `embedded_ledger_survives_kill_9`: a no-op otherwise. Writes,
/// claims and counts events, printing `ACK <i>` after each returned.
#[tokio::test]
async fn crash_child_writer() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let ledger = open(std::path::Path::new(&dir));
    let mut out = std::io::stdout().lock();
    for i in 0_u64.. {
        let e = event(EventKind::Delivered, &format!("crash-{i}"), "ip-c", "gmail");
        rows(&ledger, &e, now_secs()).await;
        let at = pos(0, i64::try_from(i).expect("offset"));
        assert_eq!(claim_one(&ledger, &e, at).await, Claim::New);
        let one = Deltas([0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        add(&ledger, &counter("ip-c"), &one).await;
        writeln!(out, "ACK {i}").expect("stdout");
        out.flush().expect("stdout");
    }
}

#[tokio::test]
async fn embedded_ledger_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "ledger_embedded::crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child writer");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // libtest prints `test <name> ... ` without a newline before the test
    // runs, so the first ACK shares its line: acknowledged = highest i + 1.
    let acked_in = |line: &str| {
        line.rsplit_once("ACK ")
            .and_then(|(_, n)| n.trim().parse::<u64>().ok())
            .map(|i| i + 1)
    };
    let mut acked = 0_u64;
    while acked < KILL_AFTER as u64 {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("child stopped after {acked} events"))
            .expect("line");
        acked = acked.max(acked_in(&line).unwrap_or(0));
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    // Acknowledgements already in the pipe when the child died count too.
    for line in lines {
        let line = line.expect("line");
        acked = acked.max(acked_in(&line).unwrap_or(0));
    }

    let ledger = open(dir.path());
    for i in 0..acked {
        let id = format!("crash-{i}");
        let history = ledger.history(&id).await.expect("history");
        assert_eq!(history.len(), 1, "acknowledged event {id} lost");
        let again = claim_one(&ledger, &history[0], pos(1, 0)).await;
        assert_eq!(again, Claim::Duplicate, "claim of {id} lost");
    }
    let daily = ledger
        .daily("ip", "ip-c", "2026-03-01")
        .await
        .expect("daily");
    let delivered = daily[0].1.0[1];
    // The event in flight at the kill may or may not have been counted.
    assert!(
        (acked as i64..=acked as i64 + 1).contains(&delivered),
        "{delivered} counted for {acked} acknowledged"
    );
}
