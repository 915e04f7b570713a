use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use sluice_log::{EmbeddedLog, Log, MessageLog};
use sluice_proto::v1::Envelope;
use sluice_shaping::{Millis, Span};

use super::*;
use crate::config::SenderConfig;
use crate::dispatch::Intake;
use crate::offsets::OffsetTracker;
use crate::route::{Router, StaticRoutes};
use crate::wake::SiteQueues;

/// A site queue holds 5.
const CONFIG: &str = r#"
    node = "s1"
    pool = "shared"
    dns = false
    [routes]
    "*" = ["127.0.0.2:2525"]
    [queues]
    max_per_site = 5
    [[shaping.ips]]
    address = "127.0.0.10"
    pool = "shared"
"#;

const PARKED: usize = 20;

/// Message `n` for site `slow`, parked at `at` for an hour.
fn parked(n: usize, at: Millis) -> Envelope {
    let slot = Some(fate::timestamp(at.after(Span::hours(1))));
    Envelope {
        message_id: format!("m{n}"),
        recipient: format!("user{n}@slow.test"),
        pool: "shared".into(),
        site: "slow".into(),
        parked_at: Some(fate::timestamp(at)),
        not_before: slot,
        hold_until: slot,
        ..Default::default()
    }
}

/// The offsets of the records the consumer hands over within `wait`.
async fn routed(rx: &mut mpsc::UnboundedReceiver<Intake>, wait: Duration) -> Vec<i64> {
    let mut offsets = Vec::new();
    while let Ok(Some(intake)) = tokio::time::timeout(wait, rx.recv()).await {
        match intake {
            Intake::Deliver { rec, envelope, .. } => {
                assert_eq!(envelope.parked_at, None, "a woken record goes as due");
                offsets.push(rec.offset);
            }
            _ => panic!("a woken record must go to delivery"),
        }
    }
    offsets
}

/// A consumer of one tier partition holding [`PARKED`] records parked for
/// site `slow` a minute ago, woken by a change now: what it hands over, the
/// sites' queue counts it reads, and how to stop it.
struct Woken {
    rx: mpsc::UnboundedReceiver<Intake>,
    queues: Arc<SiteQueues>,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn woken_backlog() -> Woken {
    woken_backlog_in(1, PARKED).await
}

/// [`woken_backlog`] with `records` in a tier of `partitions`.
async fn woken_backlog_in(partitions: i32, records: usize) -> Woken {
    let dir = tempfile::tempdir().expect("temp dir");
    let log: Log = EmbeddedLog::open(dir.path()).expect("open log").into();
    log.create_topic("tier", partitions).await.expect("topic");
    let now = fate::now();
    let mut used = HashSet::new();
    for n in 0..records {
        let record = parked(n, Millis(now.0 - 60_000)).encode_to_vec();
        let key = format!("k{n}");
        let at = log.append("tier", key.as_bytes(), &record).await;
        used.insert(at.expect("append").partition);
    }
    assert_eq!(
        used.len(),
        partitions as usize,
        "every partition holds some"
    );
    let mut consumer = log.subscribe("g", &["tier".into()]).await.expect("join");
    let cfg = Arc::new(SenderConfig::from_toml(CONFIG).expect("config"));
    let engine = crate::state::load(None, cfg.shaping.clone()).expect("engine");
    let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
    let (tx, rx) = mpsc::unbounded_channel();
    let hosts = vec!["127.0.0.2:2525".parse().expect("addr")];
    let routes = BTreeMap::from([("slow.test".to_owned(), hosts)]);
    let router = Router::static_only(StaticRoutes::new(routes));
    let (changes, changes_rx) = mpsc::unbounded_channel();
    let tiers = HashMap::from([("tier".to_owned(), Span::hours(1))]);
    let queues = Arc::new(SiteQueues::default());
    let waking = Waking::new(
        (log.clone(), tiers),
        (changes_rx, queues.clone()),
        Default::default(),
    );
    let consume =
        Consume::new(cfg, router, engine.sites().clone(), tracker.clone(), tx).with_wakes(waking);
    changes
        .send(Wake {
            site: "slow".into(),
            at: now,
        })
        .expect("send the change");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        consume
            .run(&mut consumer, async {
                let _ = stopped.await;
            })
            .await;
    });

    Woken {
        rx,
        queues,
        stop,
        running,
        _dir: dir,
    }
}

/// A raised limit wakes 20 records parked for an hour in one tier
/// partition. They go into the room the site's queue has, once per count
/// of it: five while it is empty, three when it holds two, none while no
/// new count comes; none twice.
#[tokio::test]
async fn woken_mail_goes_a_site_queue_at_a_time() {
    let Woken {
        mut rx,
        queues,
        stop,
        running,
        ..
    } = woken_backlog().await;
    let mut seen = HashSet::new();
    let wait = Duration::from_millis(1_500);
    let mut take = |wave: Vec<i64>| {
        for offset in &wave {
            assert!(seen.insert(*offset), "offset {offset} went twice");
        }
        wave.len()
    };
    // Before the dispatcher's first count, the site's queue counts as empty.
    assert_eq!(
        take(routed(&mut rx, wait).await),
        5,
        "an empty queue's worth"
    );
    assert_eq!(
        take(routed(&mut rx, wait).await),
        0,
        "nothing more until the dispatcher counts again"
    );
    queues.publish(HashMap::from([("slow".to_owned(), 2)]));
    assert_eq!(
        take(routed(&mut rx, wait).await),
        3,
        "the room left by 2 queued"
    );
    let mut out = 8;
    while out < PARKED {
        queues.publish(HashMap::from([("slow".to_owned(), 0)]));
        let wave = take(routed(&mut rx, wait).await);
        assert_eq!(wave, 5.min(PARKED - out), "after {out} out");
        out += wave;
    }
    assert!(
        routed(&mut rx, wait).await.is_empty(),
        "nothing more goes once all {PARKED} are out"
    );
    let _ = stop.send(());
    running.await.expect("the consumer stops");
}

/// A change that leaves the site without room (a lowered limit) holds the
/// partition 10 s at most: then the woken records go anyway (to overflow
/// and be parked again by the site's rate).
#[tokio::test]
async fn a_site_without_room_holds_its_partition_ten_seconds_at_most() {
    let Woken {
        mut rx,
        stop,
        running,
        ..
    } = woken_backlog().await;
    let first = routed(&mut rx, Duration::from_millis(1_500)).await;
    assert_eq!(first.len(), 5, "an empty queue's worth");
    let held = tokio::time::Instant::now();
    let next = tokio::time::timeout(Duration::from_secs(15), rx.recv()).await;
    let waited = held.elapsed();
    assert!(
        matches!(next, Ok(Some(Intake::Deliver { .. }))),
        "the rest goes once the hold ends"
    );
    assert!(
        waited >= Duration::from_secs(8) && waited <= Duration::from_secs(12),
        "the rest began to go after {waited:?}: the hold is 10 s"
    );
    let rest = 1 + routed(&mut rx, Duration::from_millis(1_500)).await.len();
    assert_eq!(rest, PARKED - 5, "all the rest goes");
    let _ = stop.send(());
    running.await.expect("the consumer stops");
}

/// A record the read-ahead took goes when it arrives, unless its partition
/// was revoked meanwhile: then the next owner reads it, and this node must
/// not deliver it too.
#[tokio::test]
async fn a_record_taken_early_from_a_revoked_partition_is_left_to_the_next_owner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log: Log = EmbeddedLog::open(dir.path()).expect("open log").into();
    let cfg = Arc::new(SenderConfig::from_toml(CONFIG).expect("config"));
    let engine = crate::state::load(None, cfg.shaping.clone()).expect("engine");
    let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let hosts = vec!["127.0.0.2:2525".parse().expect("addr")];
    let routes = BTreeMap::from([("slow.test".to_owned(), hosts)]);
    let router = Router::static_only(StaticRoutes::new(routes));
    let (_changes, changes_rx) = mpsc::unbounded_channel();
    let tiers = HashMap::from([("tier".to_owned(), Span::hours(1))]);
    let waking = Waking::new(
        (log, tiers),
        (changes_rx, Arc::new(SiteQueues::default())),
        Default::default(),
    );
    let mut consume =
        Consume::new(cfg, router, engine.sites().clone(), tracker.clone(), tx).with_wakes(waking);
    let rec = |offset| RecordRef {
        topic: "tier".into(),
        partition: 0,
        offset,
        trace: None,
    };
    {
        let mut t = tracker.lock().expect("lock");
        t.start("tier", 0, 0);
        assert!(t.take_early("tier", 0, 5) && t.take_early("tier", 0, 6));
    }
    let now = fate::now();
    consume.taken_early(rec(5), parked(5, now));
    assert_eq!(routed(&mut rx, Duration::from_millis(300)).await, vec![5]);

    tracker.lock().expect("lock").revoke("tier", 0);
    consume.taken_early(rec(6), parked(6, now));
    assert!(
        routed(&mut rx, Duration::from_millis(300)).await.is_empty(),
        "a record of a revoked partition was routed"
    );
}

/// While a site drains, its woken mail in several tier partitions waits
/// for its room however long that takes: with room for one a second and
/// 60 records in 12 partitions, each partition's turn comes about every
/// 12 s, and none lets its records go without room after 10 s (they would
/// only overflow and be parked again).
#[tokio::test]
async fn a_draining_site_holds_its_partitions_past_ten_seconds() {
    let Woken {
        mut rx,
        queues,
        stop,
        running,
        ..
    } = woken_backlog_in(12, 60).await;
    let mut seen = HashSet::new();
    let mut counts = 0;
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(16) {
        while let Ok(intake) = rx.try_recv() {
            let Intake::Deliver { rec, .. } = intake else {
                panic!("a woken record must go to delivery");
            };
            assert!(
                seen.insert((rec.partition, rec.offset)),
                "{rec:?} went twice"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        queues.publish(HashMap::from([("slow".to_owned(), 4)]));
        counts += 1;
    }
    let room = 5 + counts;
    assert!(
        seen.len() <= room,
        "{} woken records went with room for {room}: a partition let its records go while the site drained",
        seen.len()
    );
    assert!(
        seen.len() >= 10,
        "only {} went with room for {room}",
        seen.len()
    );
    let _ = stop.send(());
    running.await.expect("the consumer stops");
}
