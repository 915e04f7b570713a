//! The embedded store keeps everything across a reopen.

use sluice_proto::v1::*;

use crate::common::Server;

#[tokio::test]
async fn data_survives_reopening_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(sluice_control::open_embedded(dir.path()).unwrap()).await;
    let mut c = server.client().await;
    let pool = Pool {
        name: "main".into(),
        description: "d".into(),
    };
    c.put_pool(pool.clone()).await.unwrap();
    let s = Suppression {
        tenant: "acme".into(),
        address: "bob@example.com".into(),
        reason: "complaint".into(),
        created_at: None,
    };
    c.add_suppression(s).await.unwrap();
    drop(c);
    server.stop().await;

    let server = Server::start(sluice_control::open_embedded(dir.path()).unwrap()).await;
    let mut c = server.client().await;
    let pools = c
        .list_pools(ListPoolsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pools.pools, [pool]);
    let req = ListSuppressionsRequest {
        tenant: "acme".into(),
        ..Default::default()
    };
    let list = c.list_suppressions(req).await.unwrap().into_inner();
    assert_eq!(list.suppressions[0].reason, "complaint");
    // Revisions continue after the reopen: the next change is revision 3.
    c.put_pool(Pool {
        name: "bulk".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let req = WatchRequest {
        node: "t".into(),
        after_revision: 2,
    };
    let mut stream = c.watch(req).await.unwrap().into_inner();
    let change = stream.message().await.unwrap().expect("a change");
    assert_eq!(change.revision, 3);
    drop(stream);
    drop(c);
    server.stop().await;
}
