//! Open and click tracking through the real ingest node and Kafka: a
//! tracked templated message leaves with its web links pointing at signed
//! redirects and an open pixel, all covered by a DKIM signature that dkimpy
//! verifies; the pixel and the redirects answer on the HTTP listener and
//! publish `opened` and `clicked` events with the reader's User-Agent and
//! the machine flag; forged tokens and redirects to URLs the message did not
//! hold are refused and publish nothing; tracking asked for where it cannot
//! be done is refused naming `tracking`.

use sluice_ingest::tracking::{Kind, Tracking};
use sluice_proto::v1::{
    EventKind, Recipient, SendRequest, Template, Tracking as TrackingRequest, send_request,
};
use sluice_testkit::http::{request, status};
use sluice_testkit::mime::{html_part, urls_under};

use crate::common::{self, ACME_KEY, GLOBEX_KEY, Options, TRACKING_BASE, UNSUBSCRIBE_SECRET};
use crate::grpc::{authed, connect};

const SALE: &str = "https://shop.example/sale?a=1&b=2";
const HOME: &str = "https://shop.example/";
const CHROME: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";

fn tracked(from: &str, html: &str, opens: bool, clicks: bool) -> SendRequest {
    SendRequest {
        from: from.into(),
        recipients: vec![Recipient {
            address: "ann@example.org".into(),
            ..Default::default()
        }],
        content: Some(send_request::Content::Template(Template {
            subject: "Spring sale".into(),
            text: "Sale at https://shop.example/sale".into(),
            html: html.into(),
        })),
        campaign: "spring".into(),
        tracking: Some(TrackingRequest { opens, clicks }),
        ..Default::default()
    }
}

const HTML: &str = "<html><body><p>Hello</p>\
    <a href=\"https://shop.example/sale?a=1&amp;b=2\">sale</a> \
    <a href=\"https://shop.example/\">home</a> \
    <a href=\"mailto:help@shop.example\">help</a></body></html>";

/// The path and query of a tracking URL, to ask the node under test.
fn path(url: &str) -> &str {
    url.strip_prefix("https://track.test")
        .expect("a tracking URL")
}

async fn get(node: &common::Node, path: &str, user_agent: &str) -> String {
    let agent = format!("user-agent: {user_agent}");
    request(&node.http.to_string(), "GET", path, &[&agent], b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_links_are_signed_lead_back_and_record_what_the_reader_did() {
    let node = common::start(Options::default()).await;
    let mut client = connect(&node).await;
    let sent = client
        .send(authed(
            tracked("news@acme.example", HTML, true, true),
            ACME_KEY,
        ))
        .await
        .expect("send")
        .into_inner();
    let message_id = sent.recipients[0].message_id.clone();
    let envelope = node.envelopes("shared", 1).await.remove(0);
    common::dkimpy_verify(&node, std::slice::from_ref(&envelope.content))
        .expect("dkimpy verifies the signature over the rewritten HTML");

    let html = html_part(&envelope.content);
    let clicks = urls_under(&html, &format!("{TRACKING_BASE}/c/"));
    let opens = urls_under(&html, &format!("{TRACKING_BASE}/o/"));
    assert_eq!((clicks.len(), opens.len()), (2, 1), "{html}");
    assert!(html.contains("href=\"mailto:help@shop.example\""), "{html}");
    let signer = Tracking::new(TRACKING_BASE, UNSUBSCRIBE_SECRET);
    let token = |url: &str| url.rsplit('/').next().unwrap_or_default().to_owned();
    let targets: Vec<String> = clicks
        .iter()
        .map(|u| signer.verify(Kind::Click, &token(u)).expect("signed").url)
        .collect();
    assert_eq!(targets, [SALE, HOME]);

    // Forged first: nothing they do may reach the events topic, which holds
    // only the accepted event so far (and must hold nothing more than the
    // two GETs below add).
    let stranger = Tracking::new(TRACKING_BASE, "another-secret-another-secret-9876");
    let copy = signer
        .verify(Kind::Click, &token(&clicks[0]))
        .expect("signed")
        .copy;
    let elsewhere = stranger.click_url(&copy, "https://evil.example/");
    let (_, tag) = token(&clicks[0])
        .split_once('.')
        .map(|(p, t)| (p.to_owned(), t.to_owned()))
        .expect("token");
    let (payload, _) = token(&elsewhere)
        .split_once('.')
        .map(|(p, t)| (p.to_owned(), t.to_owned()))
        .expect("token");
    for forged in [
        path(&elsewhere).to_owned(),
        format!("/t/c/{payload}.{tag}"),
        format!("/t/c/{}", token(&opens[0])),
        format!("/t/o/{}", token(&clicks[0])),
        "/t/o/garbage".to_owned(),
    ] {
        let answer = get(&node, &forged, CHROME).await;
        assert_eq!(status(&answer), 400, "{forged}: {answer}");
        assert!(!answer.contains("evil.example"), "{answer}");
    }

    // A HEAD, as link scanners send, is answered and records nothing.
    let agent = format!("user-agent: {CHROME}");
    let head = request(
        &node.http.to_string(),
        "HEAD",
        path(&clicks[0]),
        &[&agent],
        b"",
    )
    .await;
    assert_eq!(status(&head), 302, "{head}");

    let pixel = get(&node, path(&opens[0]), "Mozilla/5.0").await;
    assert_eq!(status(&pixel), 200, "{pixel}");
    assert!(
        pixel
            .to_ascii_lowercase()
            .contains("content-type: image/gif"),
        "{pixel}"
    );
    let click = get(&node, path(&clicks[0]), CHROME).await;
    assert_eq!(status(&click), 302, "{click}");
    assert!(click.contains(&format!("location: {SALE}\r\n")), "{click}");

    let events = node.events(3).await;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        [EventKind::Accepted, EventKind::Opened, EventKind::Clicked]
    );
    for event in &events[1..] {
        assert_eq!(
            (
                event.message_id.as_str(),
                event.tenant.as_str(),
                event.campaign.as_str()
            ),
            (message_id.as_str(), "acme", "spring")
        );
        assert_eq!(event.recipient, "ann@example.org");
    }
    let opened = events[1].engagement.clone().expect("engagement");
    assert!(opened.machine, "the bare Mozilla/5.0 of a privacy proxy");
    assert_eq!(
        (opened.user_agent.as_str(), opened.url.as_str()),
        ("Mozilla/5.0", "")
    );
    let clicked = events[2].engagement.clone().expect("engagement");
    assert!(!clicked.machine, "a browser");
    assert_eq!(
        (clicked.user_agent.as_str(), clicked.url.as_str()),
        (CHROME, SALE)
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_asked_for_where_it_cannot_be_done_is_refused_by_name() {
    let node = common::start(Options::default()).await;
    let mut client = connect(&node).await;
    let raw = SendRequest {
        content: Some(send_request::Content::Raw(
            b"From: news@acme.example\r\nTo: ann@example.org\r\nSubject: x\r\n\r\nhi\r\n".to_vec(),
        )),
        ..tracked("news@acme.example", HTML, false, true)
    };
    let text_only = SendRequest {
        content: Some(send_request::Content::Template(Template {
            subject: "x".into(),
            text: "hi".into(),
            html: String::new(),
        })),
        ..tracked("news@acme.example", HTML, true, false)
    };
    let cases = [
        (
            tracked("news@globex.example", HTML, true, true),
            GLOBEX_KEY,
            "has not enabled tracking",
        ),
        (raw, ACME_KEY, "raw messages are sent as submitted"),
        (text_only, ACME_KEY, "html part"),
    ];
    for (request, key, reason) in cases {
        let status = client
            .send(authed(request, key))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("tracking"), "{status:?}");
        assert!(status.message().contains(reason), "{status:?}");
    }
    // Nothing was published: the first envelope is the next good message,
    // sent without tracking (its HTML untouched).
    let plain = client
        .send(authed(
            tracked("news@acme.example", HTML, false, false),
            ACME_KEY,
        ))
        .await
        .expect("send")
        .into_inner();
    let envelope = node.envelopes("shared", 1).await.remove(0);
    assert_eq!(envelope.message_id, plain.recipients[0].message_id);
    let html = html_part(&envelope.content);
    assert!(html.contains("href=\"https://shop.example/\""), "{html}");
    assert!(!html.contains(TRACKING_BASE), "{html}");
    node.stop().await;
}
