//! A batch of real events through Kafka into Cassandra, read back over a
//! real gRPC connection to the Query service (and through the typed client
//! the CLI uses).

use std::time::Duration;

use sluice_proto::v1::{
    BounceClass, EventKind, GetMessageRequest, GetReputationRequest, GetStatsRequest,
    StatsDimension,
};

use crate::common::*;

const IP: &str = "192.0.2.10";
const BAD_IP: &str = "192.0.2.66";

fn scenario() -> Vec<sluice_proto::v1::Event> {
    let mut events = vec![
        event(EventKind::Accepted, "m-del", "", ""),
        event(EventKind::Delivered, "m-del", IP, "google"),
        event(EventKind::Deferred, "m-def", IP, "google"),
        bounce("m-hard", IP, "google", BounceClass::BadMailbox),
        bounce("m-dom", IP, "yahoo", BounceClass::BadDomain),
        bounce("m-soft", IP, "google", BounceClass::MailboxFull),
        event(EventKind::Delivered, "m-fbl", IP, "google"),
        event(EventKind::Complained, "m-fbl", IP, "google"),
    ];
    let mut retried = event(EventKind::Delivered, "m-def", IP, "google");
    retried.attempt = 1;
    // One second later: history is ordered by event time.
    if let Some(at) = retried.at.as_mut() {
        at.seconds += 1;
    }
    events.push(retried);
    // A path with 12 % hard bounces over 250 sends: paused.
    for i in 0..250 {
        events.push(if i % 8 == 0 {
            bounce(
                &format!("b-{i}"),
                BAD_IP,
                "outlook",
                BounceClass::BadMailbox,
            )
        } else {
            event(EventKind::Delivered, &format!("b-{i}"), BAD_IP, "outlook")
        });
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_batch_and_answers_over_grpc() {
    let (config, session) = fresh_config().await;
    let events = scenario();
    let mut payloads: Vec<Vec<u8>> = events.iter().map(prost::Message::encode_to_vec).collect();
    payloads.insert(3, vec![0xff, 0xff, 0xff]); // not an Event
    let records = payloads.len() as i64;
    produce_raw(&config, payloads).await;

    let recorder = start(&config).await;
    wait_until(
        "every record committed",
        Duration::from_secs(60),
        || async { committed(&config).await == records },
    )
    .await;
    let m = &recorder.metrics;
    assert_eq!(
        sluice_recorder::Metrics::get(&m.malformed),
        1,
        "the malformed record was counted"
    );
    assert_eq!(
        sluice_recorder::Metrics::get(&m.counted),
        events.len() as u64
    );

    let ks = &config.keyspace;
    assert_eq!(daily(&session, ks, "ip", IP, "delivered").await, 3);
    assert_eq!(daily(&session, ks, "ip", IP, "deferred").await, 1);
    assert_eq!(daily(&session, ks, "ip", IP, "bounced").await, 3);
    assert_eq!(daily(&session, ks, "ip", IP, "hard_bounced").await, 2);
    assert_eq!(daily(&session, ks, "ip", IP, "complained").await, 1);
    assert_eq!(
        daily(&session, ks, "site", "yahoo", "hard_bounced").await,
        1
    );
    assert_eq!(daily(&session, ks, "tenant", "acme", "accepted").await, 1);
    assert_eq!(
        daily(&session, ks, "campaign", "acme/spring", "delivered").await,
        3 + 250 - 32
    );
    check_suppressions(&session, ks).await;
    check_query_service(&recorder).await;
    check_typed_client(&recorder).await;

    recorder.stop().await;
    drop_keyspace(&session, ks).await;
}

async fn check_suppressions(session: &scylla::client::session::Session, ks: &str) {
    let rows = session
        .query_unpaged(format!("SELECT address, reason FROM {ks}.suppressions"), ())
        .await
        .expect("suppressions")
        .into_rows_result()
        .expect("rows");
    let mut got: Vec<(String, String)> = rows
        .rows()
        .expect("typed")
        .map(|r| r.expect("row"))
        .collect();
    got.retain(|(a, _)| a.starts_with("m-"));
    got.sort();
    let want = [
        ("m-dom@example.com", "hard_bounce"),
        ("m-fbl@example.com", "complaint"),
        ("m-hard@example.com", "hard_bounce"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, r)| ((*a).into(), (*r).into()))
        .collect();
    assert_eq!(
        got, want,
        "hard bounces and complaints suppress; soft bounces do not"
    );
}

async fn check_query_service(recorder: &Running) {
    let mut client = sluice_testkit::query::admin(recorder.url())
        .await
        .expect("gRPC connect");
    let status = client
        .get_message(GetMessageRequest {
            message_id: "m-def".into(),
        })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.state(), EventKind::Delivered, "latest event wins");
    let kinds: Vec<EventKind> = status.history.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, [EventKind::Deferred, EventKind::Delivered]);

    let missing = client
        .get_message(GetMessageRequest {
            message_id: "no-such".into(),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let today = sluice_recorder::time::day_of(now_secs());
    let yesterday = sluice_recorder::time::day_of(now_secs() - 86_400);
    let stats = client
        .get_stats(GetStatsRequest {
            dimension: StatsDimension::SourceIp.into(),
            key: IP.into(),
            from_day: yesterday.clone(),
            to_day: today.clone(),
        })
        .await
        .expect("stats")
        .into_inner();
    let delivered: u64 = stats.rows.iter().map(|r| r.delivered).sum();
    let complained: u64 = stats.rows.iter().map(|r| r.complained).sum();
    assert_eq!((delivered, complained), (3, 1), "{stats:?}");
    let bad = client
        .get_stats(GetStatsRequest {
            dimension: StatsDimension::Site.into(),
            key: "google".into(),
            from_day: today,
            to_day: yesterday,
        })
        .await
        .expect_err("reversed range");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("to_day"), "{}", bad.message());

    // A scoring round writes path rows first and tenant rows after them:
    // wait for both, or the tenant check below races the round.
    wait_until(
        "the paused path and tenant are scored",
        Duration::from_secs(30),
        || {
            let mut client = client.clone();
            async move {
                let req = GetReputationRequest {
                    source_ip: BAD_IP.into(),
                    tenant: "acme".into(),
                    ..Default::default()
                };
                let table = client
                    .get_reputation(req)
                    .await
                    .expect("reputation")
                    .into_inner();
                let path = table
                    .rows
                    .iter()
                    .any(|r| r.site == "outlook" && r.signal == "pause" && r.sent == 250);
                let tenant = table.tenants.iter().any(|t| t.tenant == "acme");
                path && tenant
            }
        },
    )
    .await;
    let all = client
        .get_reputation(GetReputationRequest::default())
        .await
        .expect("all")
        .into_inner();
    let google = all
        .rows
        .iter()
        .find(|r| r.source_ip == IP && r.site == "google")
        .expect("google path");
    assert_eq!(google.signal, "ok", "5 sends are below the minimum volume");
    let acme = all
        .tenants
        .iter()
        .find(|t| t.tenant == "acme")
        .expect("tenant row");
    assert_eq!(acme.signal, "pause_tenant", "{acme:?}");
}

async fn check_typed_client(recorder: &Running) {
    use sluice_recorder::client::{QueryClient, today};
    let mut client =
        QueryClient::connect(&recorder.url(), Some(sluice_testkit::query::ADMIN_TOKEN))
            .await
            .expect("connect");
    let status = client.message("m-hard").await.expect("status");
    assert_eq!(status.state(), EventKind::Bounced);
    let reputation = client.reputation(BAD_IP, "").await.expect("reputation");
    assert_eq!(reputation.rows[0].signal, "pause", "{reputation:?}");
    let today = today();
    let rows = client
        .stats("campaign", "acme/spring", (&today, &today))
        .await
        .expect("stats");
    assert!(rows.iter().any(|r| r.key == "acme/spring"), "{rows:?}");
    let err = client
        .stats("pool", "x", (&today, &today))
        .await
        .expect_err("not a dimension");
    assert!(err.to_string().contains("--by"), "{err}");
    let err = QueryClient::connect("http://127.0.0.1:1", None)
        .await
        .expect_err("nothing there");
    assert!(err.to_string().contains("sluice recorder"), "{err}");
}
