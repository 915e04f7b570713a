//! The per-IP state store (`ip_state`, migration 7) against a real
//! Cassandra: a claim returns the last holder's state and fences it; a write
//! with an older epoch is refused and changes nothing.

use std::net::IpAddr;
use std::time::SystemTime;

use sluice_sender::{Claim, CqlLeases, IpStates, Leases};
use sluice_shaping::{IpRecord, IpState, Snapshot};

fn state(address: IpAddr, generation: u64, suspended: u64) -> Snapshot {
    Snapshot {
        generation,
        ips: vec![IpRecord {
            address,
            state: IpState {
                suspended_until: sluice_shaping::Millis(suspended),
                ..IpState::default()
            },
        }],
        ..Snapshot::default()
    }
}

#[tokio::test]
async fn a_write_with_an_older_epoch_is_refused_and_changes_nothing() {
    let (session, keyspace) = sluice_testkit::cql::migrated_keyspace("ipstate").await;
    let open = |_| async {
        CqlLeases::open(sluice_testkit::servers::cassandra().await, &keyspace, "p")
            .await
            .expect("store")
            .ip_states()
    };
    let (a, b) = (open(0).await, open(1).await);
    let ip: IpAddr = "127.0.0.10".parse().unwrap();
    let now = SystemTime::now();

    assert!(a.read(ip).await.unwrap().is_none());
    assert!(
        !a.save(ip, "a", 1, &state(ip, 1, 1), now).await.unwrap(),
        "no write before a claim"
    );
    assert_eq!(
        a.claim(ip, "a", 1, now).await.unwrap(),
        Claim::Claimed(None)
    );
    assert!(a.save(ip, "a", 1, &state(ip, 1, 111), now).await.unwrap());
    assert!(a.save(ip, "a", 1, &state(ip, 1, 222), now).await.unwrap());

    // b takes the lease at epoch 2: it gets a's last state and fences a.
    assert_eq!(
        b.claim(ip, "b", 2, now).await.unwrap(),
        Claim::Claimed(Some(state(ip, 1, 222)))
    );
    let before = b.read(ip).await.unwrap().unwrap();
    assert_eq!((before.epoch, before.node.as_str()), (2, "b"));
    assert!(
        !a.save(ip, "a", 1, &state(ip, 1, 333), now).await.unwrap(),
        "a's write at epoch 1 is refused"
    );
    assert_eq!(
        b.read(ip).await.unwrap().unwrap(),
        before,
        "and changed nothing"
    );
    assert_eq!(
        a.claim(ip, "a", 1, now).await.unwrap(),
        Claim::Newer(2),
        "nor can a claim back an older epoch"
    );
    assert!(b.save(ip, "b", 2, &state(ip, 2, 444), now).await.unwrap());
    let after = a.read(ip).await.unwrap().unwrap();
    assert_eq!((after.epoch, after.node.as_str()), (2, "b"));
    assert_eq!(after.state, Some(state(ip, 2, 444)));

    // With the lease store: epochs come from ip_leases.
    let leases = CqlLeases::open(sluice_testkit::servers::cassandra().await, &keyspace, "p")
        .await
        .unwrap();
    let other: IpAddr = "127.0.0.11".parse().unwrap();
    let e = leases
        .acquire(other, "a", now, std::time::Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        a.claim(other, "a", e, now).await.unwrap(),
        Claim::Claimed(None)
    );
    assert!(a.read(ip).await.unwrap().is_some(), "other rows untouched");
    sluice_testkit::cql::drop_keyspace(&session, &keyspace).await;
}

#[tokio::test]
async fn two_claims_racing_for_one_epoch_change_leave_one_state() {
    let (session, keyspace) = sluice_testkit::cql::migrated_keyspace("ipstate_race").await;
    let store = CqlLeases::open(sluice_testkit::servers::cassandra().await, &keyspace, "p")
        .await
        .unwrap()
        .ip_states();
    let ip: IpAddr = "127.0.0.12".parse().unwrap();
    let now = SystemTime::now();
    store.claim(ip, "a", 1, now).await.unwrap();
    assert!(store.save(ip, "a", 1, &state(ip, 1, 5), now).await.unwrap());
    // The old holder writes while the new one claims: either the write lands
    // before the claim (and the claim returns it) or it is refused.
    let late = state(ip, 1, 6);
    let (claim, wrote) = tokio::join!(
        store.claim(ip, "b", 2, now),
        store.save(ip, "a", 1, &late, now)
    );
    let Claim::Claimed(Some(got)) = claim.unwrap() else {
        panic!("claim")
    };
    if wrote.unwrap() {
        let row = store.read(ip).await.unwrap().unwrap();
        assert_eq!(row.epoch, 2);
        assert_eq!(got, state(ip, 1, 6), "the claim saw the last write");
    } else {
        assert_eq!(got, state(ip, 1, 5));
    }
    sluice_testkit::cql::drop_keyspace(&session, &keyspace).await;
}
