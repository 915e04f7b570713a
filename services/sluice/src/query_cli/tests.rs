//! The Query commands against a real Query service (tonic on 127.0.0.1:0)
//! over an embedded ledger the test fills: tables, JSON, and the error when
//! no recorder answers.

use std::sync::Arc;

use sluice_proto::v1::{BounceClass, Event, EventKind, ReputationRow};
use sluice_recorder::auth::TenantKeysConfig;
use sluice_recorder::{
    AnyLedger, EmbeddedLedger, Ledger, QueryAuth, QueryService, RecorderConfig, record,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const IP: &str = "192.0.2.10";
const BAD_IP: &str = "192.0.2.66";

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        .try_into()
        .expect("seconds fit i64")
}

fn event(kind: EventKind, message_id: &str, n: usize) -> Event {
    Event {
        event_id: format!("{message_id}-{n}"),
        kind: kind.into(),
        message_id: message_id.into(),
        tenant: "acme".into(),
        campaign: "spring".into(),
        recipient: format!("{message_id}@example.com"),
        source_ip: IP.into(),
        site: "google".into(),
        at: Some(prost_types::Timestamp {
            seconds: now_secs(),
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// 221 deliveries and one hard bounce of campaign `spring`, and a paused path.
async fn fill(ledger: &AnyLedger) {
    let now = now_secs();
    let mut events: Vec<Event> = (0..221)
        .map(|i| event(EventKind::Delivered, &format!("m-{i}"), 0))
        .collect();
    let mut hard = event(EventKind::Bounced, "m-hard", 0);
    hard.bounce_class = BounceClass::BadMailbox.into();
    events.push(hard);
    let all: Vec<&Event> = events.iter().collect();
    ledger.write_rows(&all, now).await.expect("rows");
    let mut sums: std::collections::BTreeMap<record::CounterKey, record::Part> = Default::default();
    for (offset, e) in events.iter().enumerate() {
        for key in record::counter_keys(e, now) {
            let part = sums.entry(key).or_default();
            part.take(offset as i64, &record::deltas(e));
            part.through = offset as i64;
        }
    }
    let parts: Vec<_> = sums.into_iter().map(|(k, part)| (k, 0, part)).collect();
    ledger.put_parts(&parts).await.expect("parts");
    let row = ReputationRow {
        source_ip: BAD_IP.into(),
        site: "outlook".into(),
        sent: 250,
        signal: "pause".into(),
        window_hours: 24,
        ..Default::default()
    };
    ledger.put_path_reputation(&row).await.expect("reputation");
}

const ADMIN: &str = "cli-test-admin";
const ACME_KEY: &str = "acme-api-key";

/// An admin token and tenant `acme`'s API key.
fn auth() -> QueryAuth {
    let config = RecorderConfig {
        credentials: vec![sluice_node::auth::Credential {
            name: "admin".into(),
            role: sluice_node::auth::Role::Admin,
            token_hash: sluice_node::secret::hash_secret(ADMIN),
        }],
        tenants: vec![TenantKeysConfig {
            name: "acme".into(),
            api_keys: vec![sluice_node::secret::hash_secret(ACME_KEY)],
        }],
        ..RecorderConfig::default()
    };
    QueryAuth::from_config(&config).expect("auth")
}

#[tokio::test]
async fn query_commands_render_tables_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger: AnyLedger = EmbeddedLedger::open(dir.path(), 30, 7)
        .expect("open ledger")
        .into();
    fill(&ledger).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(QueryService::server(Arc::new(ledger), Arc::new(auth())))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = stopped.await;
                },
            ),
    );

    let at = |token| super::Remote {
        addr: url.as_str(),
        token,
        tls: Default::default(),
    };
    let admin = &at(Some(ADMIN));
    let err = super::status(&at(None), "m-hard", false)
        .await
        .expect_err("no token");
    assert!(err.to_string().contains("SLUICE_QUERY_TOKEN"), "{err}");
    let text = super::status(admin, "m-hard", false)
        .await
        .expect("status table");
    assert!(text.contains("m-hard: bounced"), "{text}");
    let tenant = &at(Some(ACME_KEY));
    let text = super::status(tenant, "m-hard", false)
        .await
        .expect("the tenant's own message");
    assert!(text.contains("m-hard: bounced"), "{text}");
    let today = sluice_recorder::client::today();
    let own = super::stats(tenant, "campaign", "spring", (&today, &today), false)
        .await
        .expect("the tenant's own campaign, by its name");
    assert!(own.contains("spring") && own.contains("221"), "{own}");
    let err = super::stats(tenant, "ip", BAD_IP, (&today, &today), false)
        .await
        .expect_err("IP counters are shared");
    assert!(err.to_string().contains("shared by every tenant"), "{err}");
    let json = super::reputation(admin, BAD_IP, "", true)
        .await
        .expect("json");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(doc["paths"][0]["signal"], "pause", "{doc}");
    let table = super::stats(admin, "campaign", "acme/spring", (&today, &today), false)
        .await
        .expect("stats table");
    assert!(table.contains("spring") && table.contains("221"), "{table}");
    let err = super::stats(admin, "pool", "x", (&today, &today), false)
        .await
        .expect_err("not a dimension");
    assert!(err.to_string().contains("--by"), "{err}");

    let _ = stop.send(());
    server.await.expect("server task").expect("server");
    let err = super::status(admin, "x", false)
        .await
        .expect_err("nothing there");
    assert!(err.to_string().contains("sluice recorder"), "{err}");
}
