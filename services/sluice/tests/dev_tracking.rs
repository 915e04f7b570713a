//! Open and click tracking on the real `sluice dev` (issue #15 item 5): a
//! tracked campaign reaches the ISP simulator with its links pointing at
//! signed redirects and an open pixel; readers fetch them from the inbound
//! role's HTTP listener (`inbound.http`) as mail clients would. Each valid
//! fetch ends as an `opened` or `clicked` event in the message's history
//! with the User-Agent and the machine flag, reaches the tenant's webhook (the example receiver,
//! verifying every signature) once per fetch, and counts once per message
//! in the tenant's and the campaign's stats (which the tenant reads with
//! its own API key). A forged redirect is refused
//! and records nothing.

use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{
    EventKind, GetMessageRequest, GetStatsRequest, Recipient, SendRequest, StatsDimension,
    StatsRow, Template, Tracking, send_request,
};
use sluice_testkit::cluster::free_addr;
use sluice_testkit::dev::{dev_config, start_dev};
use sluice_testkit::http::{request, status};
use sluice_testkit::mime::{html_part, urls_under};
use sluice_testkit::webhooks::{received, receiver, register};

const SCENARIO: &str = r#"
[[provider]]
name = "inbox"
listen = "127.0.0.2:0"
domains = ["inbox.test"]
keep_bodies = true
"#;

const ANN: &str = "ann@inbox.test";
const BOB: &str = "bob@inbox.test";
/// dev's default `ingest.tracking.base_url`.
const BASE: &str = "http://127.0.0.1:7081/t";
const SALE: &str = "https://shop.example/sale?id=7&ref=mail";
const CHROME: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
const GMAIL_PROXY: &str =
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
/// What Apple Mail Privacy Protection's proxy sends.
const APPLE_PROXY: &str = "Mozilla/5.0";

fn campaign() -> tonic::Request<SendRequest> {
    let recipients = [ANN, BOB]
        .iter()
        .map(|a| Recipient {
            address: (*a).into(),
            ..Default::default()
        })
        .collect();
    let html = format!(
        "<html><body><p>Spring sale</p><a href=\"{}\">shop</a></body></html>",
        SALE.replace('&', "&amp;")
    );
    let mut request = tonic::Request::new(SendRequest {
        from: "news@sluice.test".into(),
        recipients,
        content: Some(send_request::Content::Template(Template {
            subject: "Spring sale".into(),
            text: format!("Shop: {SALE}"),
            html,
        })),
        campaign: "spring".into(),
        tracking: Some(Tracking {
            opens: true,
            clicks: true,
        }),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        "Bearer sluice-dev-key".parse().expect("metadata"),
    );
    request
}

/// The delivered copy's pixel and click URLs of `recipient`.
async fn links(sim: &sluice_sim::SimHandle, recipient: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Some(body) = sim.bodies_to(recipient).pop() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "{recipient} never got the message"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let html = html_part(&body);
    let opens = urls_under(&html, &format!("{BASE}/o/"));
    let clicks = urls_under(&html, &format!("{BASE}/c/"));
    assert_eq!((opens.len(), clicks.len()), (1, 1), "{html}");
    (opens[0].clone(), clicks[0].clone())
}

/// Fetches a tracking URL from the inbound role's HTTP listener at `http`
/// as `user_agent`.
async fn fetch(http: &str, url: &str, user_agent: &str) -> String {
    let path = url
        .strip_prefix("http://127.0.0.1:7081")
        .expect("dev's base URL");
    let agent = format!("user-agent: {user_agent}");
    request(http, "GET", path, &[&agent], b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_and_clicks_reach_history_webhooks_and_stats() {
    let sim = sluice_testkit::sender::start_sim(SCENARIO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    std::fs::write(
        &file,
        dev_config(dir.path(), &sim, "inbox", "inbox.test", ""),
    )
    .expect("write");
    let dev = start_dev(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &file).await;
    let port = free_addr().port();
    let _hook = receiver(dir.path(), port, 0).await;
    register(&dev.http, "engagement", port, &["opened", "clicked"]).await;

    let mut ingest = IngestClient::connect(dev.ingest.clone())
        .await
        .expect("ingest");
    let sent = ingest.send(campaign()).await.expect("send").into_inner();
    let id = |address: &str| {
        let r = sent.recipients.iter().find(|r| r.address == address);
        r.expect("recipient").message_id.clone()
    };
    let (ann_open, ann_click) = links(&sim, ANN).await;
    let (bob_open, bob_click) = links(&sim, BOB).await;

    // Ann's click token under Bob's payload: refused, nothing recorded.
    let (bob_payload, _) = bob_click.rsplit_once('.').expect("token");
    let (_, ann_tag) = ann_click.rsplit_once('.').expect("token");
    let forged = fetch(
        &dev.inbound_http,
        &format!("{bob_payload}.{ann_tag}"),
        CHROME,
    )
    .await;
    assert_eq!(status(&forged), 400, "{forged}");

    let pixel = fetch(&dev.inbound_http, &ann_open, GMAIL_PROXY).await;
    assert_eq!(status(&pixel), 200, "{pixel}");
    for _ in 0..2 {
        let click = fetch(&dev.inbound_http, &ann_click, CHROME).await;
        assert_eq!(status(&click), 302, "{click}");
        assert!(click.contains(&format!("location: {SALE}\r\n")), "{click}");
    }
    let pixel = fetch(&dev.inbound_http, &bob_open, APPLE_PROXY).await;
    assert_eq!(status(&pixel), 200, "{pixel}");

    // Every fetch reaches the webhook: two opens and two clicks.
    let deadline = Instant::now() + Duration::from_secs(60);
    let posted = loop {
        let posted = received(dir.path());
        if posted.len() >= 4 {
            break posted;
        }
        assert!(Instant::now() < deadline, "posted so far: {posted:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let of = |kind: &str, who: &str| {
        posted
            .iter()
            .filter(|e| e["type"] == kind && e["recipient"] == who)
            .collect::<Vec<_>>()
    };
    let ann_clicks = of("clicked", ANN);
    assert_eq!(ann_clicks.len(), 2, "{posted:?}");
    assert!(
        ann_clicks
            .iter()
            .all(|e| e["engagement"]["url"] == SALE && e["engagement"]["machine"] == false)
    );
    assert_eq!(
        of("opened", ANN)[0]["engagement"]["machine"],
        false,
        "Gmail's proxy opens for a person"
    );
    assert_eq!(
        of("opened", BOB)[0]["engagement"]["machine"],
        true,
        "Apple's proxy fetches every image"
    );
    assert!(
        of("clicked", BOB).is_empty(),
        "the forged click posted nothing: {posted:?}"
    );
    assert_eq!(ann_clicks[0]["campaign"], "spring");

    // Stats count each message once per kind, for the tenant and the
    // campaign.
    let token = std::fs::read_to_string(dir.path().join("data/control.token")).expect("token");
    let query = sluice_testkit::query::client(&dev.query, Some(token.trim()))
        .await
        .expect("query");
    let day = sluice_recorder::client::today();
    // The operator reads the campaign as `<tenant>/<campaign>`; the tenant,
    // with its API key, by the campaign's own name.
    let tenant = sluice_testkit::query::client(&dev.query, Some("sluice-dev-key"))
        .await
        .expect("query with the tenant's key");
    for (reader, dimension, key) in [
        (&query, StatsDimension::Tenant, "dev"),
        (&query, StatsDimension::Campaign, "dev/spring"),
        (&tenant, StatsDimension::Campaign, "spring"),
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rows = reader
                .clone()
                .get_stats(GetStatsRequest {
                    dimension: dimension.into(),
                    key: key.into(),
                    from_day: day.clone(),
                    to_day: day.clone(),
                })
                .await
                .expect("stats")
                .into_inner()
                .rows;
            let sum = |f: fn(&StatsRow) -> u64| rows.iter().map(f).sum::<u64>();
            let (opened, clicked) = (sum(|r| r.opened), sum(|r| r.clicked));
            assert!(
                opened <= 2 && clicked <= 1,
                "{key}: counted too many: {rows:?}"
            );
            if (opened, clicked, sum(|r| r.delivered)) == (2, 1, 2) {
                break;
            }
            assert!(Instant::now() < deadline, "{key}: {rows:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    // The history of each message holds what its reader did.
    let history = |id: String| {
        let mut query = query.clone();
        async move {
            let status = query
                .get_message(GetMessageRequest { message_id: id })
                .await
                .expect("message")
                .into_inner();
            status.history
        }
    };
    let ann = history(id(ANN)).await;
    let clicked = ann
        .iter()
        .find(|e| e.kind() == EventKind::Clicked)
        .expect("clicked");
    let engagement = clicked.engagement.clone().expect("engagement");
    assert_eq!(
        (engagement.url.as_str(), engagement.user_agent.as_str()),
        (SALE, CHROME)
    );
    assert!(ann.iter().any(|e| e.kind() == EventKind::Opened));
    let bob = history(id(BOB)).await;
    let opened = bob
        .iter()
        .find(|e| e.kind() == EventKind::Opened)
        .expect("opened");
    assert!(opened.engagement.as_ref().is_some_and(|e| e.machine));
    assert!(
        !bob.iter().any(|e| e.kind() == EventKind::Clicked),
        "{bob:?}"
    );
    let report = sim.shutdown().await;
    assert_eq!(report.total_violations(), 0);
}
