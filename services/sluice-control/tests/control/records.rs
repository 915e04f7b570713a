//! The records, deletes, snapshots and tokens added with providers: one
//! suite, through gRPC, against both stores.

use std::time::Duration;

use futures::StreamExt;
use sluice_control::{ControlConfig, Credential, Role};
use sluice_node::secret::hash_secret;
use sluice_proto::v1::config_change::Change;
use sluice_proto::v1::control_client::ControlClient;
use sluice_proto::v1::*;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{Backend, serve, serve_with};
use crate::conformance::ip;

type Client = ControlClient<Channel>;

fn pool(name: &str) -> Pool {
    Pool {
        name: name.into(),
        description: String::new(),
    }
}

fn provider(name: &str, per_minute: u32) -> Provider {
    Provider {
        name: name.into(),
        messages_per_minute: per_minute,
        messages_per_hour: 10_000,
        messages_per_day: 3_000_000_000,
        max_connections: 20,
        messages_per_second: 50,
        burst: 5,
    }
}

/// A tenant using every field, as a client would send it (hashed once:
/// hashes are salted at random).
fn full_tenant() -> Tenant {
    static TENANT: std::sync::LazyLock<Tenant> = std::sync::LazyLock::new(make_full_tenant);
    TENANT.clone()
}

fn make_full_tenant() -> Tenant {
    Tenant {
        name: "acme".into(),
        sending_domains: vec!["Mail.Acme.example".into(), "acme.example".into()],
        default_pool: "main".into(),
        rate_quota: 50,
        paused: false,
        trace: true,
        smtp_dsn: true,
        tracking: true,
        api_key_hashes: vec![hash_secret("key-1"), hash_secret("key-2")],
        smtp_users: vec![
            SmtpUser {
                username: "newsletter".into(),
                password_hash: sluice_node::secret::hash_password("pw"),
            },
            SmtpUser {
                username: "billing@acme.example".into(),
                password_hash: hash_secret("pw2"),
            },
        ],
        dkim_keys: vec![
            DkimKey {
                domain: "mail.acme.example".into(),
                selector: "s2026".into(),
                algorithm: "ed25519-sha256".into(),
                key_ref: "/etc/sluice/dkim/mail acme.pem".into(),
            },
            DkimKey {
                domain: "ACME.example".into(),
                selector: "s1".into(),
                algorithm: String::new(),
                key_ref: "/etc/sluice/dkim/acme.pem".into(),
            },
        ],
        bounce_domain: "Bounces.Acme.example".into(),
        webhooks: vec![
            Webhook {
                id: "b-crm".into(),
                url: "https://Hooks.Acme.example/sluice?x=1".into(),
                events: vec![
                    EventKind::Complained.into(),
                    EventKind::Bounced.into(),
                    EventKind::Bounced.into(),
                ],
                secret: "a-secret-of-twenty-four-chars+".into(),
                ..Webhook::default()
            },
            Webhook {
                id: "a-all".into(),
                url: "http://10.0.0.5:8080/".into(),
                secret: "another-secret-24-characters".into(),
                ..Webhook::default()
            },
        ],
    }
}

/// What the service stores for [`full_tenant`]: domains lower-cased and
/// sorted, SMTP users sorted by name.
fn full_tenant_stored() -> Tenant {
    let mut t = full_tenant();
    t.sending_domains = vec!["acme.example".into(), "mail.acme.example".into()];
    t.smtp_users.reverse();
    t.dkim_keys[1].domain = "acme.example".into();
    t.bounce_domain = "bounces.acme.example".into();
    t.webhooks.reverse();
    t.webhooks[1].url = "https://hooks.acme.example/sluice?x=1".into();
    t.webhooks[1].events = vec![EventKind::Bounced.into(), EventKind::Complained.into()];
    t
}

/// DisableWebhook marks one webhook and keeps the rest of the tenant;
/// an unknown webhook is NOT_FOUND; a put enables it again.
async fn webhook_is_disabled(c: &mut Client) {
    let disable = |id: &str| DisableWebhookRequest {
        tenant: "acme".into(),
        id: id.into(),
        reason: "posts failed for 24h".into(),
    };
    let err = c.disable_webhook(disable("nope")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let tenant = c
        .disable_webhook(disable("b-crm"))
        .await
        .unwrap()
        .into_inner();
    let mut want = full_tenant_stored();
    want.webhooks[1].disabled = true;
    want.webhooks[1].disabled_reason = "posts failed for 24h".into();
    assert_eq!(tenant, want);
    let listed = c.list_tenants(ListTenantsRequest {}).await.unwrap();
    assert_eq!(listed.into_inner().tenants, [want.clone()]);
    one_webhook_changes(c, want).await;
    c.put_tenant(full_tenant()).await.expect("put again");
}

/// PutWebhook adds or replaces one webhook (enabled again) and keeps the
/// rest; a bad one names its field and changes nothing; DeleteWebhook
/// removes one.
async fn one_webhook_changes(c: &mut Client, stored: Tenant) {
    let put = |tenant: &str, hook: Webhook| PutWebhookRequest {
        tenant: tenant.into(),
        webhook: Some(hook),
    };
    let new = Webhook {
        id: "c-new".into(),
        url: "https://new.acme.example/h".into(),
        secret: "x".repeat(30),
        ..Webhook::default()
    };
    let bad = Webhook {
        url: "ftp://new.acme.example/".into(),
        ..new.clone()
    };
    let err = c.put_webhook(put("acme", bad)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("webhook.url"), "{}", err.message());
    let err = c.put_webhook(put("nobody", new.clone())).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let tenant = c
        .put_webhook(put("acme", new.clone()))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = tenant.webhooks.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["a-all", "b-crm", "c-new"]);
    assert_eq!(
        tenant.sending_domains, stored.sending_domains,
        "the rest is kept"
    );
    let again = Webhook {
        disabled: true,
        ..stored.webhooks[1].clone()
    };
    let tenant = c
        .put_webhook(put("acme", again))
        .await
        .unwrap()
        .into_inner();
    assert!(!tenant.webhooks[1].disabled, "a put enables");
    assert!(tenant.webhooks[1].disabled_reason.is_empty());
    let delete = |id: &str| DeleteWebhookRequest {
        tenant: "acme".into(),
        id: id.into(),
    };
    assert!(
        c.delete_webhook(delete("c-new"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert!(
        !c.delete_webhook(delete("c-new"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    let listed = c.list_tenants(ListTenantsRequest {}).await.unwrap();
    assert_eq!(listed.into_inner().tenants[0].webhooks.len(), 2);
}

async fn snapshot(c: &mut Client) -> ConfigSnapshot {
    c.get_snapshot(GetSnapshotRequest {})
        .await
        .expect("snapshot")
        .into_inner()
}

async fn next_change(stream: &mut tonic::Streaming<ConfigChange>) -> ConfigChange {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a change within 10 s")
        .expect("stream open")
        .expect("change")
}

fn delete(kind: RecordKind, name: &str) -> DeleteRequest {
    DeleteRequest {
        kind: kind.into(),
        name: name.into(),
    }
}

pub async fn tenant_fields_round_trip(backend: Backend) {
    let server = serve(backend).await;
    let mut c = server.client().await;
    c.put_pool(pool("main")).await.expect("pool");
    let put = c
        .put_tenant(full_tenant())
        .await
        .expect("tenant")
        .into_inner();
    assert_eq!(put, full_tenant_stored());
    let listed = c.list_tenants(ListTenantsRequest {}).await.unwrap();
    assert_eq!(listed.into_inner().tenants, [full_tenant_stored()]);
    webhook_is_disabled(&mut c).await;
    // A put replaces the whole record: fewer keys, no users, no DKIM.
    let smaller = Tenant {
        api_key_hashes: vec![hash_secret("key-3")],
        smtp_users: vec![],
        dkim_keys: vec![],
        bounce_domain: String::new(),
        ..full_tenant()
    };
    let put = c.put_tenant(smaller).await.expect("smaller").into_inner();
    let listed = c.list_tenants(ListTenantsRequest {}).await.unwrap();
    assert_eq!(listed.into_inner().tenants, [put]);
    // Bad credentials and keys are refused, naming the field.
    for (tenant, field) in [
        (
            Tenant {
                api_key_hashes: vec!["secret-in-clear".into()],
                ..full_tenant()
            },
            "api_key_hashes[0]",
        ),
        (
            Tenant {
                dkim_keys: vec![DkimKey {
                    domain: "other.example".into(),
                    selector: "s".into(),
                    algorithm: String::new(),
                    key_ref: "k".into(),
                }],
                ..full_tenant()
            },
            "dkim_keys[0].domain",
        ),
    ] {
        let status = c.put_tenant(tenant).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{status:?}");
    }
    server.stop().await;
}

pub async fn providers_put_list_and_watch(backend: Backend) {
    let server = serve(backend).await;
    let mut c = server.client().await;
    c.put_provider(provider("microsoft", 300))
        .await
        .expect("put");
    c.put_provider(provider("google", 600)).await.expect("put");
    c.put_provider(provider("microsoft", 200))
        .await
        .expect("replace");
    let list = c.list_providers(ListProvidersRequest {}).await.unwrap();
    assert_eq!(
        list.into_inner().providers,
        [provider("google", 600), provider("microsoft", 200)]
    );
    let status = c.put_provider(provider("", 1)).await.expect_err("no name");
    assert_eq!(status.code(), Code::InvalidArgument);
    let big = Provider {
        messages_per_minute: u32::MAX,
        ..provider("yahoo", 1)
    };
    let status = c.put_provider(big).await.expect_err("too big");
    assert!(
        status.message().contains("messages_per_minute"),
        "{status:?}"
    );
    let mut stream = c
        .watch(WatchRequest {
            node: "t".into(),
            after_revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let first = next_change(&mut stream).await;
    assert_eq!(
        first.change,
        Some(Change::Provider(provider("microsoft", 300)))
    );
    assert_eq!(snapshot(&mut c).await.providers.len(), 2);
    drop(stream);
    server.stop().await;
}

pub async fn deletes(backend: Backend) {
    let server = serve(backend).await;
    let mut c = server.client().await;
    c.put_pool(pool("main")).await.unwrap();
    c.put_pool(pool("spare")).await.unwrap();
    let plan = WarmupPlan {
        name: "new-ip".into(),
        steps: vec![WarmupStep {
            day: 1,
            daily_cap: 50,
            ..Default::default()
        }],
    };
    c.put_warmup_plan(plan.clone()).await.unwrap();
    c.put_ip(ip("2001:db8::10", "main", "new-ip"))
        .await
        .unwrap();
    let tenant = Tenant {
        name: "acme".into(),
        default_pool: "main".into(),
        ..Default::default()
    };
    c.put_tenant(tenant).await.unwrap();
    c.put_provider(provider("google", 1)).await.unwrap();
    c.put_site_policy(SitePolicy {
        site: "gmail".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let before = snapshot(&mut c).await;

    // Absent: false, no new revision.
    for (kind, name) in [
        (RecordKind::Pool, "nope"),
        (RecordKind::Ip, "192.0.2.99"),
        (RecordKind::Provider, "nope"),
    ] {
        let r = c.delete(delete(kind, name)).await.expect("absent delete");
        assert!(!r.into_inner().deleted, "{kind:?} {name}");
    }
    assert_eq!(
        snapshot(&mut c).await,
        before,
        "absent deletes changed something"
    );

    // Still referenced: FAILED_PRECONDITION naming who refers, nothing changed.
    let status = c
        .delete(delete(RecordKind::Pool, "main"))
        .await
        .expect_err("pool in use");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let msg = status.message();
    assert!(
        msg.contains("2001:db8::10") && msg.contains("tenant acme"),
        "{msg}"
    );
    let status = c
        .delete(delete(RecordKind::WarmupPlan, "new-ip"))
        .await
        .expect_err("plan in use");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("2001:db8::10"), "{status:?}");
    assert_eq!(
        snapshot(&mut c).await,
        before,
        "refused deletes changed something"
    );

    // Bad kind or key.
    let status = c
        .delete(delete(RecordKind::Unspecified, "x"))
        .await
        .expect_err("no kind");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = c
        .delete(delete(RecordKind::Ip, "not-an-ip"))
        .await
        .expect_err("bad ip");
    assert_eq!(status.code(), Code::InvalidArgument);

    // A delete is a change in the log; the IP key is canonicalized.
    let mut stream = c
        .watch(WatchRequest {
            node: "t".into(),
            after_revision: before.revision,
        })
        .await
        .unwrap()
        .into_inner();
    let r = c
        .delete(delete(RecordKind::Ip, "2001:DB8:0::10"))
        .await
        .unwrap();
    assert!(r.into_inner().deleted);
    let change = next_change(&mut stream).await;
    assert_eq!(change.revision, before.revision + 1);
    let expected = Deleted {
        kind: RecordKind::Ip.into(),
        name: "2001:db8::10".into(),
    };
    assert_eq!(change.change, Some(Change::Deleted(expected)));
    let ips = c.list_ips(ListIpsRequest::default()).await.unwrap();
    assert!(ips.into_inner().ips.is_empty());

    // With the IP and the tenant gone, the pool and the plan may go.
    for (kind, name) in [
        (RecordKind::WarmupPlan, "new-ip"),
        (RecordKind::Tenant, "acme"),
        (RecordKind::Pool, "main"),
        (RecordKind::Provider, "google"),
        (RecordKind::SitePolicy, "gmail"),
    ] {
        let r = c.delete(delete(kind, name)).await.expect("delete");
        assert!(r.into_inner().deleted, "{kind:?} {name}");
        let change = next_change(&mut stream).await;
        assert!(matches!(change.change, Some(Change::Deleted(ref d)) if d.name == name));
    }
    let after = snapshot(&mut c).await;
    assert_eq!(after.revision, before.revision + 6);
    assert_eq!(after.pools, [pool("spare")]);
    assert!(after.ips.is_empty() && after.tenants.is_empty() && after.providers.is_empty());
    assert!(after.warmup_plans.is_empty() && after.site_policies.is_empty());

    // A deleted record can be created again.
    c.put_warmup_plan(plan.clone()).await.unwrap();
    c.put_pool(pool("main")).await.unwrap();
    let again = snapshot(&mut c).await;
    assert_eq!(again.warmup_plans, [plan]);
    assert_eq!(again.pools.len(), 2);
    drop(stream);
    server.stop().await;
}

pub async fn snapshot_holds_everything_at_its_revision(backend: Backend) {
    let server = serve(backend).await;
    let mut c = server.client().await;
    let empty = snapshot(&mut c).await;
    assert_eq!(empty, ConfigSnapshot::default());
    c.put_pool(pool("main")).await.unwrap();
    c.put_ip(ip("192.0.2.10", "main", "")).await.unwrap();
    c.put_tenant(full_tenant()).await.unwrap();
    c.put_provider(provider("google", 5)).await.unwrap();
    // Suppressions are changes too, but not in the snapshot.
    c.add_suppression(Suppression {
        tenant: "acme".into(),
        address: "bob@example.com".into(),
        reason: String::new(),
        created_at: None,
    })
    .await
    .unwrap();
    let snap = snapshot(&mut c).await;
    assert_eq!(snap.revision, 5);
    assert_eq!(snap.pools, [pool("main")]);
    assert_eq!(snap.ips, [ip("192.0.2.10", "main", "")]);
    assert_eq!(snap.tenants, [full_tenant_stored()]);
    assert_eq!(snap.providers, [provider("google", 5)]);
    // Watching from the snapshot's revision sends only later changes.
    let mut stream = c
        .watch(WatchRequest {
            node: "t".into(),
            after_revision: snap.revision,
        })
        .await
        .unwrap()
        .into_inner();
    c.put_pool(pool("bulk")).await.unwrap();
    let next = next_change(&mut stream).await;
    assert_eq!(next.revision, snap.revision + 1);
    assert_eq!(next.change, Some(Change::Pool(pool("bulk"))));
    drop(stream);
    server.stop().await;
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    r
}

fn credentials() -> ControlConfig {
    let credential = |name: &str, role, token: &str| Credential {
        name: name.into(),
        role,
        token_hash: hash_secret(token),
    };
    ControlConfig {
        credentials: vec![
            credential("root", Role::Admin, "admin-token"),
            credential("ops", Role::Operator, "operator-token"),
            credential("sender-1", Role::Node, "node-token"),
        ],
        ..ControlConfig::default()
    }
}

pub async fn tokens_decide_who_may_do_what(backend: Backend) {
    let server = serve_with(backend, credentials()).await;
    let mut c = server.client().await;
    let snap = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.get_snapshot(with_token(GetSnapshotRequest {}, "node-token"))
                .await
                .expect("node reads the snapshot")
                .into_inner()
        }
    };
    // No token, or a wrong one: UNAUTHENTICATED, nothing changed.
    let status = c.put_pool(pool("main")).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "a valid control token is required");
    let status = c
        .put_pool(with_token(pool("main"), "guess"))
        .await
        .expect_err("wrong token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = c
        .list_pools(ListPoolsRequest {})
        .await
        .expect_err("reads need a token too");
    assert_eq!(status.code(), Code::Unauthenticated);
    let watch = WatchRequest {
        node: "t".into(),
        after_revision: 0,
    };
    let status = c
        .watch(watch.clone())
        .await
        .expect_err("watch needs a token");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(snap(&mut c).await, ConfigSnapshot::default());

    // A node token reads but cannot write; the answer names the role.
    let status = c
        .put_pool(with_token(pool("main"), "node-token"))
        .await
        .expect_err("node cannot put");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("admin"), "{status:?}");
    let status = c
        .delete(with_token(delete(RecordKind::Pool, "main"), "node-token"))
        .await
        .expect_err("node cannot delete");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(snap(&mut c).await, ConfigSnapshot::default());
    c.watch(with_token(watch, "node-token"))
        .await
        .expect("node watches");

    // An admin may do everything.
    c.put_pool(with_token(pool("main"), "admin-token"))
        .await
        .expect("admin puts");
    let address = ip("192.0.2.10", "main", "");
    c.put_ip(with_token(address.clone(), "admin-token"))
        .await
        .expect("admin puts an IP");

    // An operator may pause an existing IP, and nothing else.
    let paused = SourceIp {
        paused: true,
        ..address.clone()
    };
    c.put_ip(with_token(paused.clone(), "operator-token"))
        .await
        .expect("operator pauses");
    let moved = SourceIp {
        owner_node: "sender-9".into(),
        ..paused.clone()
    };
    let status = c
        .put_ip(with_token(moved, "operator-token"))
        .await
        .expect_err("operator cannot change more than paused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let absent = ip("192.0.2.77", "main", "");
    let denied_absent = c
        .put_ip(with_token(absent, "operator-token"))
        .await
        .expect_err("operator cannot create");
    assert_eq!(
        denied_absent.message(),
        status.message(),
        "same answer either way"
    );
    let status = c
        .put_pool(with_token(pool("other"), "operator-token"))
        .await
        .expect_err("operator cannot put pools");
    assert_eq!(status.code(), Code::PermissionDenied);
    let snap = snap(&mut c).await;
    assert_eq!(snap.ips, [paused]);
    assert_eq!(snap.pools, [pool("main")]);
    server.stop().await;
}

#[tokio::test]
async fn no_credentials_and_no_switch_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sluice_control::open_embedded(dir.path()).expect("store");
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = sluice_control::run(
        sluice_control::ControlListeners {
            grpc,
            metrics: None,
        },
        ControlConfig::default(),
        sluice_control::ControlBackends {
            store,
            metrics: Default::default(),
        },
        sluice_node::CancellationToken::new(),
    )
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("allow_unauthenticated"), "{err}");
}

/// Watch streams beyond `max_watchers` are refused, naming the limit; a
/// closed stream frees its place.
#[tokio::test]
async fn watch_streams_are_capped_per_process() {
    let config = ControlConfig {
        allow_unauthenticated: true,
        max_watchers: 2,
        ..ControlConfig::default()
    };
    let server = serve_with(crate::common::Backend::Embedded, config).await;
    let mut c = server.client().await;
    let watch = || WatchRequest {
        node: "n".into(),
        after_revision: 0,
    };
    let first = c.watch(watch()).await.expect("first").into_inner();
    let _second = c.watch(watch()).await.expect("second").into_inner();
    let refused = c.watch(watch()).await.expect_err("third");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("max_watchers"), "{refused:?}");
    drop(first);
    // The server sees the stream go away shortly after.
    let mut admitted = false;
    for _ in 0..50 {
        if c.watch(watch()).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(admitted, "a closed stream frees its place");
    server.stop().await;
}

macro_rules! suite {
    ($backend:ident, $module:ident) => {
        mod $module {
            use crate::common::Backend;

            #[tokio::test]
            async fn tenant_fields_round_trip() {
                super::tenant_fields_round_trip(Backend::$backend).await;
            }

            #[tokio::test]
            async fn providers_put_list_and_watch() {
                super::providers_put_list_and_watch(Backend::$backend).await;
            }

            #[tokio::test]
            async fn deletes() {
                super::deletes(Backend::$backend).await;
            }

            #[tokio::test]
            async fn snapshot_holds_everything_at_its_revision() {
                super::snapshot_holds_everything_at_its_revision(Backend::$backend).await;
            }

            #[tokio::test]
            async fn tokens_decide_who_may_do_what() {
                super::tokens_decide_who_may_do_what(Backend::$backend).await;
            }
        }
    };
}

suite!(Embedded, embedded);
suite!(Cassandra, cassandra);
