//! Who may call the Query service, over a real tonic server on 127.0.0.1:0
//! (`sluice_testkit::query`) on the embedded ledger and on Cassandra: no
//! token is refused before anything is read or changed; a node token reads
//! no stats or messages; a tenant's API key reads its own message, stats and
//! suppressions only, and another tenant's message id is as unknown as an id
//! that does not exist; operators read everything; admins do everything.

use std::sync::Arc;

use sluice_node::secret::hash_secret;
use sluice_proto::v1::claim_idempotency_key_response::State;
use sluice_proto::v1::{
    BounceClass, CheckSuppressionsRequest, ClaimIdempotencyKeyRequest, GetMessageRequest,
    GetReputationRequest, GetStatsRequest, ListWebhookDeliveriesRequest, StatsDimension,
};
use sluice_recorder::Ledger;
use sluice_recorder::auth::TenantKeysConfig;
use sluice_recorder::{AnyLedger, CqlLedger, EmbeddedLedger, QueryAuth, RecorderConfig};
use sluice_testkit::query::{ADMIN_TOKEN, Client, NODE_TOKEN, OPERATOR_TOKEN, client};
use tonic::Code;

use crate::common::{bounce, cassandra, drop_keyspace, now_secs};
use crate::conformance::fresh;

const KEY_A: &str = "tenant-a-api-key";
const KEY_B: &str = "tenant-b-api-key";

struct World {
    a: String,
    b: String,
    msg_a: String,
    msg_b: String,
    addr_a: String,
    addr_b: String,
}

/// Tenants `a` and `b`, each with one hard-bounced message (so a
/// suppression) counted in its tenant's stats.
async fn fill(ledger: &AnyLedger) -> World {
    let (a, b) = (fresh("ta"), fresh("tb"));
    let (msg_a, msg_b) = (fresh("ma"), fresh("mb"));
    let now = now_secs();
    let mut recipients = Vec::new();
    for (tenant, id) in [(&a, &msg_a), (&b, &msg_b)] {
        let event = sluice_proto::v1::Event {
            tenant: tenant.clone(),
            ..bounce(id, "192.0.2.1", "gmail", BounceClass::BadMailbox)
        };
        crate::common::rows(ledger, &event, now).await;
        for key in sluice_recorder::record::counter_keys(&event, now) {
            let deltas = sluice_recorder::record::deltas(&event);
            crate::common::add(ledger, &key, &deltas).await;
        }
        recipients.push(event.recipient.clone());
        let attempt = crate::conformance::webhook_attempt(tenant, "crm", id, 0);
        ledger.put_webhook_attempts(&[attempt]).await.expect("log");
    }
    let [addr_a, addr_b]: [String; 2] = recipients.try_into().expect("two");
    World {
        a,
        b,
        msg_a,
        msg_b,
        addr_a,
        addr_b,
    }
}

fn auth(world: &World) -> QueryAuth {
    let tenant = |name: &str, key: &str| TenantKeysConfig {
        name: name.into(),
        api_keys: vec![hash_secret(key)],
    };
    let config = RecorderConfig {
        credentials: sluice_testkit::query::credentials(),
        tenants: vec![tenant(&world.a, KEY_A), tenant(&world.b, KEY_B)],
        ..RecorderConfig::default()
    };
    QueryAuth::from_config(&config).expect("auth")
}

fn message(id: &str) -> GetMessageRequest {
    GetMessageRequest {
        message_id: id.into(),
    }
}

fn stats(dimension: StatsDimension, key: &str) -> GetStatsRequest {
    let today = sluice_recorder::time::day_of(now_secs());
    GetStatsRequest {
        dimension: dimension.into(),
        key: key.into(),
        from_day: today.clone(),
        to_day: today,
    }
}

fn suppressions(tenant: &str, address: &str) -> CheckSuppressionsRequest {
    CheckSuppressionsRequest {
        tenant: tenant.into(),
        addresses: vec![address.into()],
    }
}

fn claim(tenant: &str, key: &str) -> ClaimIdempotencyKeyRequest {
    ClaimIdempotencyKeyRequest {
        tenant: tenant.into(),
        key: key.into(),
        holder: "holder-1".into(),
        lease_ms: 60_000,
    }
}

fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(answer) => panic!("expected a refusal, got {answer:?}"),
        Err(status) => status.code(),
    }
}

fn deliveries(tenant: &str) -> ListWebhookDeliveriesRequest {
    ListWebhookDeliveriesRequest {
        tenant: tenant.into(),
        webhook_id: "crm".into(),
        limit: 0,
    }
}

/// A tenant reads its own webhooks' delivery logs only; a node none.
async fn webhook_logs(tenant_a: &mut Client, node: &mut Client, world: &World) {
    let own = tenant_a
        .list_webhook_deliveries(deliveries(&world.a))
        .await
        .expect("own log")
        .into_inner()
        .attempts;
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0].tenant, world.a);
    assert_eq!(
        code(tenant_a.list_webhook_deliveries(deliveries(&world.b)).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(node.list_webhook_deliveries(deliveries(&world.a)).await),
        Code::PermissionDenied
    );
    let too_many = ListWebhookDeliveriesRequest {
        limit: 5000,
        ..deliveries(&world.a)
    };
    let err = tenant_a
        .list_webhook_deliveries(too_many)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("limit"), "{}", err.message());
}

async fn check_access(ledger: AnyLedger) {
    let world = fill(&ledger).await;
    let server = sluice_testkit::query::serve_with(Arc::new(ledger), auth(&world)).await;
    let url = server.url.clone();
    let (a, b) = (world.a.as_str(), world.b.as_str());

    // No token, or a wrong one: UNAUTHENTICATED, and nothing changes.
    for token in [None, Some("not-a-token")] {
        let mut anon = client(&url, token).await.expect("connect");
        let err = anon
            .get_message(message(&world.msg_a))
            .await
            .expect_err("no token");
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(err.message().contains("Bearer"), "{}", err.message());
        assert_eq!(
            code(anon.get_stats(stats(StatsDimension::Tenant, a)).await),
            Code::Unauthenticated
        );
        assert_eq!(
            code(
                anon.check_suppressions(suppressions(a, &world.addr_a))
                    .await
            ),
            Code::Unauthenticated
        );
        assert_eq!(
            code(anon.get_reputation(GetReputationRequest::default()).await),
            Code::Unauthenticated
        );
        assert_eq!(
            code(anon.claim_idempotency_key(claim(a, "k-anon")).await),
            Code::Unauthenticated
        );
    }

    // A node: what senders and ingest call, no messages, no stats.
    let mut node = client(&url, Some(NODE_TOKEN)).await.expect("connect");
    assert_eq!(
        code(node.get_stats(stats(StatsDimension::Tenant, b)).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(node.get_message(message(&world.msg_b)).await),
        Code::PermissionDenied
    );
    node.get_reputation(GetReputationRequest::default())
        .await
        .expect("node reads reputation");
    let found = node
        .check_suppressions(suppressions(b, &world.addr_b))
        .await
        .expect("node checks suppressions")
        .into_inner();
    assert_eq!(found.suppressed, vec![world.addr_b.clone()]);
    // The claim refused without a token changed nothing: this one starts.
    let started = node
        .claim_idempotency_key(claim(a, "k-anon"))
        .await
        .expect("node claims")
        .into_inner();
    assert_eq!(started.state(), State::Started);

    // Tenant A: its own data only.
    let mut tenant_a = client(&url, Some(KEY_A)).await.expect("connect");
    webhook_logs(&mut tenant_a, &mut node, &world).await;
    let own = tenant_a
        .get_message(message(&world.msg_a))
        .await
        .expect("own message")
        .into_inner();
    assert_eq!(own.history.len(), 1);
    let foreign = tenant_a
        .get_message(message(&world.msg_b))
        .await
        .expect_err("B's message");
    let unknown_id = fresh("nothing");
    let unknown = tenant_a
        .get_message(message(&unknown_id))
        .await
        .expect_err("unknown id");
    assert_eq!(foreign.code(), Code::NotFound);
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(
        foreign.message().replace(&world.msg_b, "<id>"),
        unknown.message().replace(&unknown_id, "<id>"),
        "another tenant's message looks like an unknown one"
    );
    let rows = tenant_a
        .get_stats(stats(StatsDimension::Tenant, a))
        .await
        .expect("own stats")
        .into_inner()
        .rows;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].bounced, 1);
    assert_eq!(
        code(tenant_a.get_stats(stats(StatsDimension::Tenant, b)).await),
        Code::PermissionDenied
    );
    // Both tenants ran a campaign named `spring`: each reads only its own.
    let rows = tenant_a
        .get_stats(stats(StatsDimension::Campaign, "spring"))
        .await
        .expect("own campaign")
        .into_inner()
        .rows;
    assert_eq!(rows.iter().map(|r| r.bounced).sum::<u64>(), 1, "{rows:?}");
    assert_eq!(
        code(
            tenant_a
                .get_stats(stats(StatsDimension::SourceIp, "192.0.2.1"))
                .await
        ),
        Code::PermissionDenied
    );
    let found = tenant_a
        .check_suppressions(suppressions(a, &world.addr_a))
        .await
        .expect("own suppressions")
        .into_inner();
    assert_eq!(found.suppressed, vec![world.addr_a.clone()]);
    assert_eq!(
        code(
            tenant_a
                .check_suppressions(suppressions(b, &world.addr_b))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            tenant_a
                .get_reputation(GetReputationRequest::default())
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(tenant_a.claim_idempotency_key(claim(a, "k-a")).await),
        Code::PermissionDenied
    );

    // Tenant B reads its own message.
    let mut tenant_b = client(&url, Some(KEY_B)).await.expect("connect");
    tenant_b
        .get_message(message(&world.msg_b))
        .await
        .expect("B's own message");

    // Operators read everything but take no idempotency keys.
    let mut ops = client(&url, Some(OPERATOR_TOKEN)).await.expect("connect");
    ops.get_message(message(&world.msg_b))
        .await
        .expect("operator reads a message");
    let rows = ops
        .get_stats(stats(StatsDimension::Campaign, &format!("{b}/spring")))
        .await
        .expect("operator reads stats")
        .into_inner()
        .rows;
    assert_eq!(rows.iter().map(|r| r.bounced).sum::<u64>(), 1, "{rows:?}");
    assert_eq!(
        code(ops.claim_idempotency_key(claim(a, "k-ops")).await),
        Code::PermissionDenied
    );

    // Admins read all.
    let mut admin = client(&url, Some(ADMIN_TOKEN)).await.expect("connect");
    for id in [&world.msg_a, &world.msg_b] {
        admin.get_message(message(id)).await.expect("admin reads");
    }
    for tenant in [a, b] {
        let rows = admin
            .get_stats(stats(StatsDimension::Tenant, tenant))
            .await
            .expect("admin reads stats")
            .into_inner()
            .rows;
        assert_eq!(rows.len(), 1, "{rows:?}");
    }
    let found = admin
        .check_suppressions(suppressions(b, &world.addr_b))
        .await
        .expect("admin reads suppressions")
        .into_inner();
    assert_eq!(found.suppressed.len(), 1);
    admin
        .claim_idempotency_key(claim(b, "k-admin"))
        .await
        .expect("admin claims");
}

#[tokio::test]
async fn query_access_on_the_embedded_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = EmbeddedLedger::open(dir.path(), 30, 7).expect("open");
    check_access(ledger.into()).await;
}

#[tokio::test]
async fn query_access_on_cassandra() {
    let admin = cassandra().await;
    let ks = format!("qauth_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    let replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    sluice_cql::migrate(&admin, &ks, replication)
        .await
        .expect("migrate fresh keyspace");
    let ledger = CqlLedger::prepare(cassandra().await, &ks, 30, 7)
        .await
        .expect("prepare statements");
    check_access(ledger.into()).await;
    drop_keyspace(&admin, &ks).await;
}
