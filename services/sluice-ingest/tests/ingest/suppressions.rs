//! The recorder's suppressions: a real Query service (tonic, 127.0.0.1:0)
//! on an embedded ledger holding a hard bounce, read by a real ingest node.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1::{BounceClass, Event, EventKind, Recipient};
use sluice_recorder::{EmbeddedLedger, Ledger};
use tokio::net::TcpListener;
use tonic::Code;

use crate::common::{self, ACME_KEY, Options, SUPPRESSED};
use crate::grpc::{authed, connect, marker, template_request};
use crate::http::message as json_message;

const GONE: &str = "gone@example.org";

/// A Query service on an embedded ledger where `GONE` hard-bounced for acme.
async fn query_with_a_bounce(dir: &std::path::Path) -> sluice_testkit::query::Server {
    let ledger = EmbeddedLedger::open(dir, 30, 7).expect("open the embedded ledger");
    let bounce = Event {
        event_id: "e1".into(),
        kind: EventKind::Bounced.into(),
        bounce_class: BounceClass::BadMailbox.into(),
        message_id: "m-earlier".into(),
        tenant: "acme".into(),
        recipient: GONE.into(),
        ..Default::default()
    };
    ledger
        .write_rows(&[&bounce], 0)
        .await
        .expect("write the bounce");
    sluice_testkit::query::serve(Arc::new(ledger.into())).await
}

fn to(address: &str) -> Recipient {
    Recipient {
        address: address.into(),
        substitutions: [("first".to_owned(), "X".to_owned())].into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_the_recorder_suppressed_gets_only_a_suppressed_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let query = query_with_a_bounce(dir.path()).await;
    let url = query.url.clone();
    let node = common::start(Options {
        suppressions_query: Some((url, 2_000)),
        ..Options::default()
    })
    .await;
    let mut client = connect(&node).await;
    let request = template_request(vec![
        to("ann@example.org"),
        to("Gone@Example.ORG"),
        to(SUPPRESSED),
    ]);
    let response = client
        .send(authed(request, ACME_KEY))
        .await
        .expect("send")
        .into_inner();
    let flags: Vec<bool> = response.recipients.iter().map(|r| r.suppressed).collect();
    assert_eq!(flags, [false, true, true], "{response:?}");
    // Only ann's copy, then the marker's: nothing was published for GONE.
    client
        .send(authed(marker(), ACME_KEY))
        .await
        .expect("marker");
    let envelopes = node.envelopes("shared", 2).await;
    let to: Vec<&str> = envelopes.iter().map(|e| e.recipient.as_str()).collect();
    assert_eq!(to, ["ann@example.org", "marker@example.org"]);
    let events = node.events(4).await;
    let kinds: Vec<(EventKind, &str)> = events
        .iter()
        .map(|e| (e.kind(), e.recipient.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Accepted, "ann@example.org"),
            (EventKind::Suppressed, "Gone@Example.ORG"),
            (EventKind::Suppressed, SUPPRESSED),
            (EventKind::Accepted, "marker@example.org"),
        ]
    );
    let text = node.metrics.render();
    for counted in [
        "sluice_ingest_tenant_recipients_total{tenant=\"acme\",outcome=\"published\"} 2\n",
        "sluice_ingest_tenant_recipients_total{tenant=\"acme\",outcome=\"suppressed\"} 2\n",
    ] {
        assert!(text.contains(counted), "{counted} missing from\n{text}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_query_service_fails_the_submission_closed() {
    // A port that was just free: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let node = common::start(Options {
        suppressions_query: Some((url.clone(), 500)),
        ..Options::default()
    })
    .await;
    let mut client = connect(&node).await;
    let started = std::time::Instant::now();
    let err = client
        .send(authed(marker(), ACME_KEY))
        .await
        .expect_err("refused while suppressions cannot be checked");
    assert!(started.elapsed() < Duration::from_secs(5), "short timeout");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let message = err.message();
    assert!(message.contains("suppressions.query_addr"), "{message}");
    assert!(message.contains(&url), "{message}");
    let (status, body) = crate::http::call(
        &node,
        "POST",
        "/v1/messages",
        Some(ACME_KEY),
        Some(json_message()),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.to_string().contains("suppressions.query_addr"),
        "{body}"
    );
    // The marker's recipient and the message's two.
    let refused = "sluice_ingest_tenant_recipients_total{tenant=\"acme\",outcome=\"refused\"} 3\n";
    let text = node.metrics.render();
    assert!(text.contains(refused), "{refused} missing from\n{text}");
    node.stop().await;
}
