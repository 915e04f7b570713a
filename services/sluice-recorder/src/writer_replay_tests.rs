//! Property test of the writer under crashes: the events topic read in
//! batches of any size, the recorder crashing after any stage of a batch
//! (before its commit) and a fresh one replaying from the committed offsets,
//! ends with exactly the counters of one clean pass — and those match a
//! model that counts each (message, outcome) once.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sluice_node::CancellationToken;
use sluice_proto::v1::{BounceClass, Event, EventKind};

use crate::ledger::{AnyLedger, Ledger};
use crate::record::Position;
use crate::writer::Writer;
use crate::{EmbeddedLedger, Metrics};

const NOW: i64 = 1_800_000_000;
const IP: &str = "192.0.2.7";

fn writer(ledger: &Arc<AnyLedger>) -> Writer {
    Writer {
        ledger: ledger.clone(),
        concurrency: 8,
        retry_initial: Duration::from_millis(1),
        retry_max: Duration::from_millis(2),
        metrics: Arc::new(Metrics::default()),
        stop: CancellationToken::new(),
        parts: Default::default(),
    }
}

/// An event from a small space of messages, kinds and ids, so that
/// republished events (same id) and repeats (new id) are common.
fn event((message, kind, id): (u8, u8, u8)) -> Event {
    let kind = match kind % 3 {
        0 => EventKind::Delivered,
        1 => EventKind::Deferred,
        _ => EventKind::Bounced,
    };
    Event {
        event_id: format!("ev-{message}-{id}"),
        message_id: format!("m-{message}"),
        tenant: "acme".into(),
        kind: kind.into(),
        attempt: 1,
        bounce_class: BounceClass::BadMailbox.into(),
        source_ip: IP.into(),
        site: "gmail".into(),
        at: Some(prost_types::Timestamp {
            seconds: NOW,
            nanos: 0,
        }),
        ..Event::default()
    }
}

/// The log: a message's events in one of two partitions (by message id).
fn log(raw: &[(u8, u8, u8)]) -> Vec<(Event, Position)> {
    let mut next = [0_i64; 2];
    raw.iter()
        .map(|r| {
            let partition = i32::from(r.0 % 2);
            let slot = &mut next[usize::from(r.0 % 2)];
            *slot += 1;
            (
                event(*r),
                Position {
                    partition,
                    offset: *slot - 1,
                },
            )
        })
        .collect()
}

/// Daily (ip, site) counters: delivered, deferred, bounced.
async fn counters(ledger: &AnyLedger) -> (i64, i64, i64) {
    let day = crate::time::day_of(NOW);
    let rows = ledger.daily("ip", IP, &day).await.expect("daily");
    let d = rows.first().map(|r| r.1).unwrap_or_default();
    (d.get("delivered"), d.get("deferred"), d.get("bounced"))
}

/// Each (message, outcome) once; deferrals once per attempt (all attempt 1).
fn model(log: &[(Event, Position)]) -> (i64, i64, i64) {
    let mut seen = std::collections::HashSet::new();
    let mut counts = (0, 0, 0);
    for (e, _) in log {
        if seen.insert((e.message_id.clone(), e.kind)) {
            match e.kind() {
                EventKind::Delivered => counts.0 += 1,
                EventKind::Deferred => counts.1 += 1,
                _ => counts.2 += 1,
            }
        }
    }
    counts
}

/// Consumes `log` in batches of `sizes`; after each batch `crashes` says
/// whether the recorder dies before committing (0: no; 1: after the whole
/// write; 2: after rows and claims only), a fresh one then resuming from
/// the committed offsets. A replayed batch never crashes twice in a row.
async fn consume(ledger: &Arc<AnyLedger>, log: &[(Event, Position)], plan: &[(usize, u8)]) {
    let mut committed = 0;
    let mut w = writer(ledger);
    let mut step = 0;
    let mut crashed = false;
    while committed < log.len() {
        let (size, crash) = plan[step % plan.len()];
        step += 1;
        let end = (committed + size.max(1)).min(log.len());
        let batch = &log[committed..end];
        let crash = if crashed { 0 } else { crash % 3 };
        crashed = crash != 0;
        match crash {
            0 => {
                w.write(batch, NOW).await.expect("write");
                committed = end;
            }
            1 => {
                w.write(batch, NOW).await.expect("write");
                w = writer(ledger);
            }
            _ => {
                let events: Vec<&Event> = batch.iter().map(|(e, _)| e).collect();
                ledger.write_rows(&events, NOW).await.expect("rows");
                w.claims(batch).await.expect("claims");
                w = writer(ledger);
            }
        }
    }
}

fn fresh_ledger(dir: &tempfile::TempDir) -> Arc<AnyLedger> {
    let ledger = EmbeddedLedger::open(dir.path(), 30, 7).expect("open");
    Arc::new(ledger.into())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn crashes_and_replays_count_exactly_once(
        raw in prop::collection::vec((0_u8..12, 0_u8..3, 0_u8..2), 1..60),
        plan in prop::collection::vec((1_usize..12, 0_u8..6), 1..8),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let log = log(&raw);
        let (clean, crashed) = runtime.block_on(async {
            let (a, b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
            let (la, lb) = (fresh_ledger(&a), fresh_ledger(&b));
            consume(&la, &log, &[(7, 0)]).await;
            consume(&lb, &log, &plan).await;
            (counters(&la).await, counters(&lb).await)
        });
        prop_assert_eq!(clean, model(&log));
        prop_assert_eq!(crashed, clean);
    }
}
