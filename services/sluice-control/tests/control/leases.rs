//! The lease view: on the CQL store, ListIps and GetSnapshot show who holds
//! each IP, read from the sender's `ip_leases` table in the same keyspace.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scylla::value::CqlTimestamp;
use sluice_control::CqlConfigStore;
use sluice_proto::v1::*;

use crate::common::Server;
use crate::conformance::ip;

fn millis(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[tokio::test]
async fn cql_ips_show_their_unexpired_lease() {
    let (session, ks) = sluice_testkit::cql::migrated_keyspace("control_lease").await;
    let store = CqlConfigStore::open(session, &ks)
        .await
        .expect("open CQL store");
    let server = Server::start(Arc::new(store)).await;
    let mut c = server.client().await;
    c.put_pool(Pool {
        name: "main".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    for address in ["192.0.2.10", "192.0.2.11", "2001:db8::12"] {
        c.put_ip(ip(address, "main", "")).await.unwrap();
    }
    // The sender's side, on a session of its own.
    let session = sluice_testkit::servers::cassandra().await;
    let later = SystemTime::now() + Duration::from_secs(300);
    let earlier = SystemTime::now() - Duration::from_secs(5);
    let insert = format!(
        "INSERT INTO {ks}.ip_leases (pool, ip, owner, epoch, expires) VALUES (?, ?, ?, ?, ?)"
    );
    for (address, owner, epoch, expires) in [
        ("192.0.2.10", "sender-2", 7_i64, later),
        ("192.0.2.11", "sender-3", 2, earlier),
        ("2001:DB8::12", "sender-4", 1, later),
    ] {
        session
            .query_unpaged(
                insert.clone(),
                ("main", address, owner, epoch, CqlTimestamp(millis(expires))),
            )
            .await
            .expect("insert lease");
    }
    let ips = c
        .list_ips(ListIpsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .ips;
    let lease = |i: usize| ips[i].lease.clone();
    let held = lease(0).expect("192.0.2.10 is held");
    assert_eq!((held.node.as_str(), held.epoch), ("sender-2", 7));
    let expires = held.expires_at.expect("expiry");
    assert_eq!(expires.seconds * 1000, millis(later) / 1000 * 1000);
    assert_eq!(lease(1), None, "an expired lease is not shown");
    assert_eq!(
        lease(2).map(|l| l.node),
        Some("sender-4".into()),
        "addresses are matched in canonical form"
    );
    let snap = c
        .get_snapshot(GetSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snap.ips, ips);
    server.stop().await;
    sluice_testkit::cql::drop_keyspace(&session, &ks).await;
}
