//! The CQL lease store against a real Cassandra: lightweight transactions
//! give one owner per IP, expiry hands it over with a higher epoch, and a
//! stale owner can neither renew nor release.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use sluice_sender::{CqlLeases, Leases};

const TTL: Duration = Duration::from_secs(10);

async fn two_stores(
    pool: &str,
) -> (
    CqlLeases,
    CqlLeases,
    scylla::client::session::Session,
    String,
) {
    let (session, keyspace) = sluice_testkit::cql::migrated_keyspace("leases").await;
    let a = CqlLeases::open(sluice_testkit::servers::cassandra().await, &keyspace, pool)
        .await
        .expect("store a");
    let b = CqlLeases::open(sluice_testkit::servers::cassandra().await, &keyspace, pool)
        .await
        .expect("store b");
    (a, b, session, keyspace)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn exactly_one_of_two_contenders_wins_and_expiry_hands_over_with_a_higher_epoch() {
    let (a, b, session, keyspace) = two_stores("p").await;
    let ip = ip("127.0.0.10");
    let t0 = SystemTime::now();

    // Both race for a free IP.
    let (ra, rb) = tokio::join!(a.acquire(ip, "a", t0, TTL), b.acquire(ip, "b", t0, TTL));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        [ra, rb].iter().filter(|r| r.is_some()).count(),
        1,
        "exactly one winner: {ra:?} {rb:?}"
    );
    let (winner, w, loser, l) = if ra.is_some() {
        ("a", &a, "b", &b)
    } else {
        ("b", &b, "a", &a)
    };
    assert_eq!(ra.or(rb), Some(1), "first take is epoch 1");

    // Held: the loser cannot take it before expiry; the winner renews.
    assert_eq!(l.acquire(ip, loser, t0 + TTL / 2, TTL).await.unwrap(), None);
    assert!(w.renew(ip, winner, 1, t0, TTL).await.unwrap());
    assert!(
        !l.renew(ip, loser, 1, t0, TTL).await.unwrap(),
        "not the loser's"
    );

    // Expired: both race again, one wins with epoch 2.
    let t1 = t0 + TTL + Duration::from_millis(1);
    let (ra, rb) = tokio::join!(a.acquire(ip, "a", t1, TTL), b.acquire(ip, "b", t1, TTL));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        [ra, rb].iter().filter(|r| r.is_some()).count(),
        1,
        "{ra:?} {rb:?}"
    );
    assert_eq!(ra.or(rb), Some(2), "every take raises the epoch");
    let (owner, o, stale, s) = if ra.is_some() {
        ("a", &a, "b", &b)
    } else {
        ("b", &b, "a", &a)
    };

    // The holder of epoch 1 can no longer renew it, whoever won epoch 2.
    assert!(
        !w.renew(ip, winner, 1, t1, TTL).await.unwrap(),
        "epoch 1 is over"
    );
    assert!(
        !s.renew(ip, stale, 2, t1, TTL).await.unwrap(),
        "epoch 2 is not {stale}'s"
    );
    s.release(ip, stale, 1, t1).await.unwrap();
    assert_eq!(
        s.acquire(ip, stale, t1, TTL).await.unwrap(),
        None,
        "a stale release changed nothing"
    );

    // A release by the owner frees it at once; the next take is epoch 3.
    assert!(o.renew(ip, owner, 2, t1, TTL).await.unwrap());
    o.release(ip, owner, 2, t1).await.unwrap();
    let t2 = t1 + Duration::from_millis(1);
    assert_eq!(s.acquire(ip, stale, t2, TTL).await.unwrap(), Some(3));

    sluice_testkit::cql::drop_keyspace(&session, &keyspace).await;
}

#[tokio::test]
async fn heartbeats_list_live_nodes_of_the_pool_only() {
    let (a, b, session, keyspace) = two_stores("p").await;
    let other = CqlLeases::open(
        sluice_testkit::servers::cassandra().await,
        &keyspace,
        "other",
    )
    .await
    .unwrap();
    let now = SystemTime::now();
    a.heartbeat("a", now, Duration::from_secs(2)).await.unwrap();
    b.heartbeat("b", now, Duration::from_secs(2)).await.unwrap();
    other
        .heartbeat("c", now, Duration::from_secs(2))
        .await
        .unwrap();
    let live = a.live_nodes().await.unwrap();
    assert_eq!(live.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    // The heartbeat's TTL ends it.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert!(a.live_nodes().await.unwrap().is_empty());
    sluice_testkit::cql::drop_keyspace(&session, &keyspace).await;
}

#[tokio::test]
async fn an_unmigrated_keyspace_is_refused_with_what_to_run() {
    let session = sluice_testkit::servers::cassandra().await;
    let err = match CqlLeases::open(session, "no_such_keyspace_leases", "p").await {
        Ok(_) => panic!("opened a store on a keyspace without tables"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("ip_leases") && err.contains("sluice migrate"),
        "{err}"
    );
}
