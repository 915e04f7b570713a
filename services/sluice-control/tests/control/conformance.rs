//! One suite, run through gRPC against both stores.

use std::time::Duration;

use futures::StreamExt;
use sluice_proto::v1::config_change::Change;
use sluice_proto::v1::control_client::ControlClient;
use sluice_proto::v1::*;
use tonic::transport::Channel;

use crate::common::{Backend, serve};

type Client = ControlClient<Channel>;

fn steps(caps: &[u64]) -> Vec<WarmupStep> {
    (1..)
        .zip(caps)
        .map(|(day, &daily_cap)| WarmupStep {
            day,
            daily_cap,
            hourly_cap: 0,
            // Day 1 caps one site, so the per-site caps round-trip too.
            site_caps: match day {
                1 => [("google".to_owned(), daily_cap.min(10))].into(),
                _ => Default::default(),
            },
        })
        .collect()
}

pub fn ip(address: &str, pool: &str, plan: &str) -> SourceIp {
    SourceIp {
        address: address.into(),
        pool: pool.into(),
        owner_node: "sender-1".into(),
        warmup_plan: plan.into(),
        ehlo_name: "mta1.example.com".into(),
        paused: false,
        lease: None,
        limits: Some(LimitOverrides {
            messages_per_minute: 300,
            burst: 3,
            ..Default::default()
        }),
        site_limits: [(
            "google".to_owned(),
            LimitOverrides {
                max_connections: 2,
                messages_per_day: 5_000_000_000,
                ..Default::default()
            },
        )]
        .into(),
    }
}

fn suppression(tenant: &str, address: &str) -> Suppression {
    Suppression {
        tenant: tenant.into(),
        address: address.into(),
        reason: String::new(),
        created_at: None,
    }
}

/// Everything the service holds, for "changes nothing" checks.
async fn everything(c: &mut Client) -> String {
    let pools = c
        .list_pools(ListPoolsRequest {})
        .await
        .unwrap()
        .into_inner();
    let ips = c.list_ips(ListIpsRequest::default()).await.unwrap();
    let plans = c
        .list_warmup_plans(ListWarmupPlansRequest {})
        .await
        .unwrap();
    let sites = c
        .list_site_policies(ListSitePoliciesRequest {})
        .await
        .unwrap();
    let tenants = c.list_tenants(ListTenantsRequest {}).await.unwrap();
    let req = ListSuppressionsRequest {
        tenant: "acme".into(),
        ..Default::default()
    };
    let supp = c.list_suppressions(req).await.unwrap();
    format!(
        "{pools:?}{:?}{:?}{:?}{:?}{:?}",
        ips.into_inner(),
        plans.into_inner(),
        sites.into_inner(),
        tenants.into_inner(),
        supp.into_inner()
    )
}

/// A pool, a plan, an IP, a site policy, a tenant and a suppression.
async fn seed(c: &mut Client) {
    let pool = |name: &str| Pool {
        name: name.into(),
        description: format!("{name} mail"),
    };
    c.put_pool(pool("main")).await.expect("put pool main");
    c.put_pool(pool("bulk")).await.expect("put pool bulk");
    let plan = WarmupPlan {
        name: "new-ip".into(),
        steps: steps(&[50, 100, 250]),
    };
    c.put_warmup_plan(plan).await.expect("put plan");
    c.put_ip(ip("192.0.2.10", "main", "new-ip"))
        .await
        .expect("put ip");
    c.put_ip(ip("2001:db8::10", "bulk", ""))
        .await
        .expect("put ipv6");
    let site = SitePolicy {
        site: "google".into(),
        messages_per_minute: 600,
        messages_per_day: 1_000_000,
        max_connections: 10,
        require_tls: true,
        messages_per_second: 20,
        burst: 4,
        ..Default::default()
    };
    c.put_site_policy(site).await.expect("put site policy");
    let tenant = Tenant {
        name: "acme".into(),
        sending_domains: vec!["Mail.Acme.example".into()],
        default_pool: "main".into(),
        rate_quota: 100,
        paused: false,
        ..Default::default()
    };
    c.put_tenant(tenant).await.expect("put tenant");
    c.add_suppression(suppression("acme", "Bob@Example.com"))
        .await
        .expect("add suppression");
}

pub async fn put_and_list_each_kind(backend: Backend) {
    let server = serve(backend).await;
    let mut c = server.client().await;
    seed(&mut c).await;
    let pools = c
        .list_pools(ListPoolsRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = pools.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["bulk", "main"]);
    let ips = c
        .list_ips(ListIpsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ips.ips.len(), 2);
    let main = c
        .list_ips(ListIpsRequest {
            pool: "main".into(),
        })
        .await;
    assert_eq!(
        main.unwrap().into_inner().ips,
        [ip("192.0.2.10", "main", "new-ip")]
    );
    let plans = c
        .list_warmup_plans(ListWarmupPlansRequest {})
        .await
        .unwrap();
    assert_eq!(plans.into_inner().plans[0].steps, steps(&[50, 100, 250]));
    let sites = c
        .list_site_policies(ListSitePoliciesRequest {})
        .await
        .unwrap();
    let sites = sites.into_inner().policies;
    assert_eq!(
        (sites[0].site.as_str(), sites[0].messages_per_day),
        ("google", 1_000_000)
    );
    assert_eq!((sites[0].messages_per_second, sites[0].burst), (20, 4));
    assert!(sites[0].require_tls);
    // Control stamps when a policy changed; the same policy again keeps the
    // stamp, a changed one gets a later one, and a stamp sent is ignored.
    let stamped = sites[0].changed_at.expect("changed_at set by control");
    let again = SitePolicy {
        changed_at: Some(prost_types::Timestamp::default()),
        ..sites[0].clone()
    };
    let kept = c.put_site_policy(again.clone()).await.unwrap().into_inner();
    assert_eq!(kept.changed_at, Some(stamped), "nothing changed");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let raised = SitePolicy {
        messages_per_minute: 6000,
        ..again
    };
    c.put_site_policy(raised).await.unwrap();
    let listed = c
        .list_site_policies(ListSitePoliciesRequest {})
        .await
        .unwrap()
        .into_inner()
        .policies;
    let restamped = listed[0].changed_at.expect("stamped again");
    let millis = |t: prost_types::Timestamp| t.seconds * 1000 + i64::from(t.nanos / 1_000_000);
    assert!(
        millis(restamped) > millis(stamped),
        "{restamped:?} after {stamped:?}"
    );
    let tenants = c
        .list_tenants(ListTenantsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tenants.tenants[0].sending_domains, ["mail.acme.example"]);
    // Replacing a plan with fewer days drops the old days.
    let shorter = WarmupPlan {
        name: "new-ip".into(),
        steps: steps(&[10]),
    };
    c.put_warmup_plan(shorter).await.unwrap();
    let plans = c
        .list_warmup_plans(ListWarmupPlansRequest {})
        .await
        .unwrap();
    assert_eq!(plans.into_inner().plans[0].steps, steps(&[10]));
    server.stop().await;
}

pub async fn suppressions_page_and_remove(backend: Backend) {
    let server = serve(backend).await;
    let mut c = server.client().await;
    for i in 0..5 {
        let s = suppression("acme", &format!("user{i}@example.com"));
        c.add_suppression(s).await.unwrap();
    }
    c.add_suppression(suppression("other", "user0@example.com"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = ListSuppressionsRequest {
            tenant: "acme".into(),
            page_token,
            page_size: 2,
        };
        let page = c.list_suppressions(req).await.unwrap().into_inner();
        assert!(page.suppressions.len() <= 2);
        for s in &page.suppressions {
            assert_eq!(s.reason, "manual");
            assert!(s.created_at.is_some());
        }
        seen.extend(page.suppressions.into_iter().map(|s| s.address));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let want: Vec<String> = (0..5).map(|i| format!("user{i}@example.com")).collect();
    assert_eq!(seen, want);
    let remove = |address: &str| RemoveSuppressionRequest {
        tenant: "acme".into(),
        address: address.into(),
    };
    let gone = c
        .remove_suppression(remove("USER1@example.com"))
        .await
        .unwrap();
    assert!(gone.into_inner().removed);
    let again = c
        .remove_suppression(remove("user1@example.com"))
        .await
        .unwrap();
    assert!(!again.into_inner().removed);
    server.stop().await;
}

/// An import writes every entry or, with one bad entry, none; it takes
/// no revision.
pub async fn suppressions_import(backend: Backend) {
    let server = serve(backend).await;
    let mut c = server.client().await;
    let revision = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            let snapshot = c.get_snapshot(GetSnapshotRequest {}).await.unwrap();
            snapshot.into_inner().revision
        }
    };
    let before = revision(&mut c).await;
    let entry = |address: &str, reason: &str| Suppression {
        address: address.into(),
        reason: reason.into(),
        ..Suppression::default()
    };
    let mut entries: Vec<Suppression> = (0..300)
        .map(|i| entry(&format!("Bulk{i:03}@Example.com"), "complaint"))
        .collect();
    entries.push(entry("bulk000@example.com", "unsubscribe"));
    let bad = ImportSuppressionsRequest {
        tenant: "acme".into(),
        suppressions: [entries.clone(), vec![entry("nobody", "manual")]].concat(),
    };
    let status = c.import_suppressions(bad).await.expect_err("bad entry");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("suppressions[301].address"),
        "{status:?}"
    );
    let listed = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            let req = ListSuppressionsRequest {
                tenant: "acme".into(),
                page_token: String::new(),
                page_size: 1000,
            };
            c.list_suppressions(req)
                .await
                .unwrap()
                .into_inner()
                .suppressions
        }
    };
    assert!(
        listed(&mut c).await.is_empty(),
        "a refused import wrote nothing"
    );
    let good = ImportSuppressionsRequest {
        tenant: "acme".into(),
        suppressions: entries,
    };
    let answer = c.import_suppressions(good).await.expect("import");
    assert_eq!(answer.into_inner().imported, 300, "the repeat counts once");
    let list = listed(&mut c).await;
    assert_eq!(list.len(), 300);
    assert_eq!(list[0].address, "bulk000@example.com");
    assert_eq!(
        list[0].reason, "unsubscribe",
        "the last entry of an address wins"
    );
    assert_eq!(list[1].reason, "complaint");
    assert!(
        list.iter()
            .all(|s| s.tenant == "acme" && s.created_at.is_some())
    );
    assert_eq!(
        revision(&mut c).await,
        before,
        "an import takes no revision"
    );
    server.stop().await;
}

async fn rejected<T: std::fmt::Debug>(
    c: &mut Client,
    result: Result<tonic::Response<T>, tonic::Status>,
    field: &str,
    before: &str,
) {
    let status = result.expect_err(&format!("bad {field} must be rejected"));
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(field),
        "message `{}` must name `{field}`",
        status.message()
    );
    assert_eq!(
        everything(c).await,
        before,
        "a rejected {field} changed something"
    );
}

pub async fn bad_input_is_rejected_and_changes_nothing(backend: Backend) {
    let server = serve(backend).await;
    let mut c = server.client().await;
    seed(&mut c).await;
    let before = everything(&mut c).await;
    let r = c.put_pool(Pool::default()).await;
    rejected(&mut c, r, "name", &before).await;
    let r = c.put_ip(ip("192.0.2.300", "main", "")).await;
    rejected(&mut c, r, "address", &before).await;
    let r = c.put_ip(ip("not-an-ip", "main", "")).await;
    rejected(&mut c, r, "address", &before).await;
    let r = c.put_ip(ip("192.0.2.11", "nope", "")).await;
    rejected(&mut c, r, "pool", &before).await;
    let r = c.put_ip(ip("192.0.2.11", "main", "nope")).await;
    rejected(&mut c, r, "warmup_plan", &before).await;
    let mut bad_steps = steps(&[50, 100]);
    bad_steps[1].day = 1;
    let plan = |steps| WarmupPlan {
        name: "new-ip".into(),
        steps,
    };
    let r = c.put_warmup_plan(plan(bad_steps)).await;
    rejected(&mut c, r, "steps[1].day", &before).await;
    let r = c.put_warmup_plan(plan(steps(&[50, 0]))).await;
    rejected(&mut c, r, "steps[1].daily_cap", &before).await;
    let r = c.put_warmup_plan(plan(vec![])).await;
    rejected(&mut c, r, "steps", &before).await;
    // Size limits: a plan of more than 366 days, a description over 1024.
    let r = c.put_warmup_plan(plan(steps(&[10; 367]))).await;
    rejected(&mut c, r, "steps", &before).await;
    let long = Pool {
        name: "main".into(),
        description: "x".repeat(1025),
    };
    let r = c.put_pool(long).await;
    rejected(&mut c, r, "description", &before).await;
    let r = c.put_site_policy(SitePolicy::default()).await;
    rejected(&mut c, r, "site", &before).await;
    let tenant = |domain: &str, pool: &str| Tenant {
        name: "acme".into(),
        sending_domains: vec![domain.into()],
        default_pool: pool.into(),
        ..Default::default()
    };
    let r = c.put_tenant(tenant("no_dots", "main")).await;
    rejected(&mut c, r, "sending_domains[0]", &before).await;
    let r = c.put_tenant(tenant("acme.example", "nope")).await;
    rejected(&mut c, r, "default_pool", &before).await;
    let r = c
        .add_suppression(suppression("acme", "bob.example.com"))
        .await;
    rejected(&mut c, r, "address", &before).await;
    let mut odd = suppression("acme", "carol@example.com");
    odd.reason = "because".into();
    let r = c.add_suppression(odd).await;
    rejected(&mut c, r, "reason", &before).await;
    let r = c
        .add_suppression(suppression("", "carol@example.com"))
        .await;
    rejected(&mut c, r, "tenant", &before).await;
    server.stop().await;
}

async fn next_change(stream: &mut tonic::Streaming<ConfigChange>) -> ConfigChange {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a change within 10 s")
        .expect("stream open")
        .expect("change")
}

pub async fn watch_replays_then_follows(backend: Backend) {
    let server = serve(backend).await;
    let mut c = server.client().await;
    c.put_pool(Pool {
        name: "main".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let req = WatchRequest {
        node: "test".into(),
        after_revision: 0,
    };
    let mut stream = c.watch(req).await.unwrap().into_inner();
    let first = next_change(&mut stream).await;
    assert!(matches!(first.change, Some(Change::Pool(ref p)) if p.name == "main"));
    // A change made after subscribing arrives, with a higher revision.
    let mut writer = server.client().await;
    writer.put_ip(ip("192.0.2.20", "main", "")).await.unwrap();
    let second = next_change(&mut stream).await;
    assert!(second.revision > first.revision);
    assert!(matches!(second.change, Some(Change::Ip(ref ip)) if ip.address == "192.0.2.20"));
    writer
        .add_suppression(suppression("acme", "x@example.com"))
        .await
        .unwrap();
    let third = next_change(&mut stream).await;
    assert!(matches!(third.change, Some(Change::SuppressionAdded(_))));
    // Resuming after a revision sends only what came later.
    let req = WatchRequest {
        node: "test".into(),
        after_revision: second.revision,
    };
    let mut resumed = c.watch(req).await.unwrap().into_inner();
    assert_eq!(next_change(&mut resumed).await, third);
    // Shutdown ends open watch streams instead of hanging.
    drop(c);
    drop(writer);
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("server stops with watchers open");
}

macro_rules! suite {
    ($backend:ident, $module:ident) => {
        mod $module {
            use crate::common::Backend;

            #[tokio::test]
            async fn put_and_list_each_kind() {
                super::put_and_list_each_kind(Backend::$backend).await;
            }

            #[tokio::test]
            async fn suppressions_page_and_remove() {
                super::suppressions_page_and_remove(Backend::$backend).await;
            }

            #[tokio::test]
            async fn suppressions_import() {
                super::suppressions_import(Backend::$backend).await;
            }

            #[tokio::test]
            async fn bad_input_is_rejected_and_changes_nothing() {
                super::bad_input_is_rejected_and_changes_nothing(Backend::$backend).await;
            }

            #[tokio::test]
            async fn watch_replays_then_follows() {
                super::watch_replays_then_follows(Backend::$backend).await;
            }
        }
    };
}

suite!(Embedded, embedded);
suite!(Cassandra, cassandra);
