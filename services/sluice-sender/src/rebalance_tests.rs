use std::sync::{Arc, Mutex};

use sluice_log::{EmbeddedLog, Log, MessageLog};
use sluice_proto::v1::Envelope;
use sluice_shaping::Millis;

use super::*;
use crate::config::SenderConfig;
use crate::offsets::OffsetTracker;
use crate::route::{Router, StaticRoutes};

const CONFIG: &str = r#"
    node = "s1"
    pool = "shared"
    dns = false
    [routes]
    "*" = ["127.0.0.2:2525"]
    [[shaping.ips]]
    address = "127.0.0.10"
    pool = "shared"
"#;

fn rec(offset: i64) -> RecordRef {
    RecordRef {
        topic: "out".into(),
        partition: 0,
        offset,
        trace: None,
    }
}

/// Offsets 0..5 of a revoked partition: 0 and 4 done, 1 parked, 2 queued at
/// the dispatcher, 3 in delivery. Revocation drops 1 and 2, waits for 3,
/// and commits up to the lowest dropped record, so the next owner reads it.
#[tokio::test]
async fn revocation_drops_waiting_records_and_waits_for_deliveries_in_progress() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log: Log = EmbeddedLog::open(dir.path()).expect("open log").into();
    log.create_topic("out", 1).await.expect("topic");
    for _ in 0..5 {
        log.append("out", b"k", b"x").await.expect("append");
    }
    let mut consumer = log.subscribe("g", &["out".into()]).await.expect("join");
    let cfg = Arc::new(SenderConfig::from_toml(CONFIG).expect("config"));
    let engine = crate::state::load(None, cfg.shaping.clone()).expect("engine");
    let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let router = Router::static_only(StaticRoutes::new(Default::default()));
    let sites = engine.sites().clone();
    let mut consume = Consume::new(cfg, router, sites, tracker.clone(), tx);
    {
        let mut t = tracker.lock().expect("lock");
        (0..5).for_each(|o| {
            t.start("out", 0, o);
        });
        t.finish("out", 0, 0);
        t.finish("out", 0, 4);
    }
    let parked = (rec(1), Envelope::default(), Millis(u64::MAX));
    consume
        .parked
        .entry(("out".into(), 0))
        .or_default()
        .push_back(parked);
    let in_delivery = tracker.clone();
    let dispatcher = tokio::spawn(async move {
        while let Some(intake) = rx.recv().await {
            if let Intake::Revoke(Revocation { dropped, .. }) = intake {
                let _ = dropped.send(vec![rec(2)]);
                tokio::time::sleep(Duration::from_millis(100)).await;
                in_delivery.lock().expect("lock").finish("out", 0, 3);
            }
        }
    });

    consume.revoke(&mut consumer, &[("out".into(), 0)]).await;
    let committed = log.committed("g", "out", 0).await.expect("committed");
    assert_eq!(
        committed,
        Some(1),
        "the dropped parked record is read again"
    );
    assert!(consume.parked.is_empty());
    assert_eq!(tracker.lock().expect("lock").in_flight_of("out", 0), 0);
    drop(consume);
    dispatcher.await.expect("fake dispatcher");
}
