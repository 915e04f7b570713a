//! gRPC front door with the generated tonic client.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{EventKind, Recipient, SendRequest, Template, send_request};
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{self, ACME_KEY, GLOBEX_KEY, Options, SUPPRESSED, header};

pub async fn connect(node: &common::Node) -> IngestClient<Channel> {
    IngestClient::connect(format!("http://{}", node.grpc))
        .await
        .expect("connect gRPC")
        .max_encoding_message_size(64 * 1024 * 1024)
}

pub fn authed<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {key}").parse().expect("metadata");
    request.metadata_mut().insert("authorization", value);
    request
}

fn recipient(address: &str, first: &str) -> Recipient {
    Recipient {
        address: address.into(),
        name: format!("{first} Example"),
        substitutions: HashMap::from([("first".to_owned(), first.to_owned())]),
    }
}

pub fn template_request(recipients: Vec<Recipient>) -> SendRequest {
    SendRequest {
        from: "Acme News <news@acme.example>".into(),
        recipients,
        content: Some(send_request::Content::Template(Template {
            subject: "Hello {{ first }}".into(),
            text: "Hi {{ first }}, your address is {{ recipient.address }}.\n".into(),
            html: "<p>Hi {{ first }}</p>".into(),
        })),
        campaign: "spring".into(),
        tags: HashMap::from([("kind".to_owned(), "newsletter".to_owned())]),
        ..Default::default()
    }
}

/// One harmless message whose arrival proves nothing was published before it.
pub fn marker() -> SendRequest {
    template_request(vec![recipient("marker@example.org", "Marker")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_publishes_one_signed_envelope_per_recipient_and_events() {
    let node = common::start(Options::default()).await;
    let mut client = connect(&node).await;
    let send_at = SystemTime::now() + Duration::from_secs(3600);
    let mut request = template_request(vec![
        recipient("ann@example.org", "Ann"),
        recipient("bob@example.org", "Bob"),
        recipient(SUPPRESSED, "Blocked"),
    ]);
    request.send_at = Some(send_at.into());
    request.priority = 3;
    let response = client
        .send(authed(request, ACME_KEY))
        .await
        .expect("send")
        .into_inner();
    assert_eq!(response.recipients.len(), 3);
    assert!(!response.replayed);
    let ids: Vec<_> = response
        .recipients
        .iter()
        .map(|r| r.message_id.clone())
        .collect();
    assert!(
        ids.iter().all(|id| ulid::Ulid::from_string(id).is_ok()),
        "{ids:?}"
    );
    assert!(response.recipients[2].suppressed);

    let envelopes = node.envelopes("shared", 2).await;
    for (envelope, (name, id)) in envelopes.iter().zip([("Ann", &ids[0]), ("Bob", &ids[1])]) {
        assert_eq!(&envelope.message_id, id);
        assert_eq!(envelope.tenant, "acme");
        assert_eq!(envelope.pool, "shared");
        assert_eq!(envelope.campaign, "spring");
        assert_eq!(envelope.priority, 3);
        // Signed VERP (sluice_node::verp): it names the message.
        assert!(
            envelope.return_path.starts_with(&format!("bounce+{id}-"))
                && envelope.return_path.ends_with("@bounces.acme.example"),
            "{}",
            envelope.return_path
        );
        assert_eq!(
            envelope.tags.get("kind").map(String::as_str),
            Some("newsletter")
        );
        let not_before =
            SystemTime::try_from(envelope.not_before.expect("not_before")).expect("time");
        let skew = not_before
            .duration_since(send_at)
            .unwrap_or_else(|e| e.duration());
        assert!(
            skew < Duration::from_secs(1),
            "not_before {not_before:?} vs send_at {send_at:?}"
        );
        let content = &envelope.content;
        assert_eq!(
            header(content, "Subject").as_deref(),
            Some(format!("Hello {name}").as_str())
        );
        let unsubscribe = header(content, "List-Unsubscribe").unwrap_or_default();
        assert!(
            unsubscribe.starts_with("<https://unsub.test/u/"),
            "{unsubscribe}"
        );
        assert!(
            unsubscribe.contains(&format!("<mailto:unsubscribe+{id}-"))
                && unsubscribe.ends_with("@bounces.acme.example>"),
            "{unsubscribe}"
        );
        assert_eq!(
            header(content, "List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert_eq!(
            header(content, "Feedback-ID").as_deref(),
            Some("spring:acme:shared:sluice")
        );
        assert!(header(content, "DKIM-Signature").is_some_and(|v| v.contains("s=rsa1")));
    }
    let contents: Vec<_> = envelopes.iter().map(|e| e.content.clone()).collect();
    common::dkimpy_verify(&node, &contents).expect("dkimpy verifies the signatures");

    let events = node.events(3).await;
    let kinds: Vec<_> = events
        .iter()
        .map(|e| (e.kind(), e.message_id.clone()))
        .collect();
    assert!(
        kinds.contains(&(EventKind::Accepted, ids[0].clone())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(EventKind::Accepted, ids[1].clone())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(EventKind::Suppressed, ids[2].clone())),
        "{kinds:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_batch_answers_once_every_message_is_durable() {
    let node = common::start(Options::default()).await;
    let mut client = connect(&node).await;
    let raw = SendRequest {
        recipients: vec![recipient("raw@example.org", "Raw")],
        content: Some(send_request::Content::Raw(
            b"From: news@acme.example\r\nSubject: raw\r\n\r\nraw body\r\n".to_vec(),
        )),
        pool: "transactional".into(),
        ..Default::default()
    };
    let messages = vec![
        marker(),
        raw,
        template_request(vec![recipient("c@example.org", "C")]),
    ];
    let stream = futures::stream::iter(messages);
    let response = client
        .send_batch(authed(stream, ACME_KEY))
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(response.responses.len(), 3);
    let shared = node.envelopes("shared", 2).await;
    let transactional = node.envelopes("transactional", 1).await;
    assert_eq!(
        transactional[0].message_id,
        response.responses[1].recipients[0].message_id
    );
    let raw = &transactional[0].content;
    assert!(header(raw, "Date").is_some(), "Date added");
    assert!(header(raw, "Message-ID").is_some(), "Message-ID added");
    let mut shared_ids: Vec<_> = shared.iter().map(|e| e.message_id.clone()).collect();
    shared_ids.sort();
    let mut expected = vec![
        response.responses[0].recipients[0].message_id.clone(),
        response.responses[2].recipients[0].message_id.clone(),
    ];
    expected.sort();
    assert_eq!(shared_ids, expected);
    node.stop().await;
}

/// Issue #14's hang: RSA-signed 100 KB messages over several `SendBatch`
/// streams sharing one HTTP/2 connection stalled (40 of 1,000 in 120 s)
/// because a batch did not poll its submissions while it waited for the
/// next message. Every batch must finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signed_batches_on_one_connection_all_finish() {
    let node = common::start(Options::default()).await;
    let client = connect(&node).await;
    let body = format!("{}\r\n", "y".repeat(76)).repeat(100 * 1024 / 78);
    let big = |n: usize| SendRequest {
        recipients: vec![recipient(&format!("big{n}@example.org"), "Big")],
        content: Some(send_request::Content::Raw(
            format!("From: news@acme.example\r\nSubject: big {n}\r\n\r\n{body}").into_bytes(),
        )),
        ..Default::default()
    };
    const STREAMS: usize = 4;
    const PER_STREAM: usize = 25;
    let batches = (0..STREAMS).map(|s| {
        let mut client = client.clone();
        let messages: Vec<SendRequest> = (0..PER_STREAM).map(|i| big(s * PER_STREAM + i)).collect();
        async move {
            let stream = futures::stream::iter(messages);
            client.send_batch(authed(stream, ACME_KEY)).await
        }
    });
    let all = futures::future::join_all(batches);
    let answers = tokio::time::timeout(Duration::from_secs(90), all)
        .await
        .expect("every batch answers within 90 s (no hang)");
    for answer in answers {
        let response = answer.expect("batch accepted").into_inner();
        assert_eq!(response.responses.len(), PER_STREAM);
    }
    let published = node.envelopes("shared", STREAMS * PER_STREAM).await;
    assert_eq!(published.len(), STREAMS * PER_STREAM);
    assert!(
        published
            .iter()
            .all(|e| header(&e.content, "DKIM-Signature").is_some()),
        "every message is signed"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_idempotency_key_replays_and_publishes_nothing() {
    let node = common::start(Options::default()).await;
    let mut client = connect(&node).await;
    let mut request = template_request(vec![recipient("ann@example.org", "Ann")]);
    request.idempotency_key = "order-42".into();
    let first = client
        .send(authed(request.clone(), ACME_KEY))
        .await
        .expect("first")
        .into_inner();
    let second = client
        .send(authed(request, ACME_KEY))
        .await
        .expect("second")
        .into_inner();
    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!(first.recipients, second.recipients);
    let marker = client
        .send(authed(marker(), ACME_KEY))
        .await
        .expect("marker")
        .into_inner();
    let envelopes = node.envelopes("shared", 2).await;
    assert_eq!(envelopes[0].message_id, first.recipients[0].message_id);
    assert_eq!(
        envelopes[1].message_id, marker.recipients[0].message_id,
        "the replay published nothing"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_a_valid_key_or_with_a_foreign_domain_are_refused() {
    let node = common::start(Options::default()).await;
    let mut client = connect(&node).await;
    let err = client
        .send(tonic::Request::new(marker()))
        .await
        .expect_err("no key");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = client
        .send(authed(marker(), "wrong"))
        .await
        .expect_err("bad key");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = client
        .send(authed(marker(), GLOBEX_KEY))
        .await
        .expect_err("foreign");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("acme.example"), "{}", err.message());
    node.stop().await;
}

fn bad_requests() -> Vec<(&'static str, SendRequest)> {
    let mut cases = Vec::new();
    let mut r = marker();
    r.recipients[0].address = "not-an-address".into();
    cases.push(("recipients[0].address", r));
    let mut r = marker();
    r.recipients.push(recipient("bob@exa mple.org", "Bob"));
    cases.push(("recipients[1].address", r));
    let mut r = marker();
    r.from = "news@acme.example\r\nBcc: eve@evil.example".into();
    cases.push(("from", r));
    let mut r = marker();
    r.headers
        .insert("X-Note".into(), "a\r\nBcc: eve@evil.example".into());
    cases.push(("headers.X-Note", r));
    let mut r = marker();
    r.campaign = "c\nX: y".into();
    cases.push(("campaign", r));
    let mut r = marker();
    r.pool = "nonexistent".into();
    cases.push(("pool", r));
    let mut r = marker();
    r.recipients.push(Recipient {
        address: "nofirst@example.org".into(),
        ..Default::default()
    });
    cases.push(("recipients[1].substitutions", r));
    let mut r = marker();
    r.content = Some(send_request::Content::Raw(
        format!("From: news@acme.example\r\n\r\n{}", "x".repeat(300 * 1024)).into_bytes(),
    ));
    cases.push(("raw too large", r));
    let mut r = marker();
    r.content = Some(send_request::Content::Raw(
        b"Subject: no from\r\n\r\nbody".to_vec(),
    ));
    cases.push(("raw", r));
    let mut r = marker();
    r.content = None;
    cases.push(("content", r));
    let mut r = marker();
    r.recipients.clear();
    cases.push(("recipients", r));
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field_and_publishes_nothing() {
    let node = common::start(Options::default()).await;
    let mut client = connect(&node).await;
    for (field, request) in bad_requests() {
        let err = client
            .send(authed(request, ACME_KEY))
            .await
            .expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err}");
        assert!(
            err.message().contains(field),
            "{field} not named in {:?}",
            err.message()
        );
    }
    let mut utf8 = marker();
    utf8.recipients[0].address = "josé@bücher.example".into();
    client
        .send(authed(utf8, ACME_KEY))
        .await
        .expect("SMTPUTF8 address accepted");
    let envelopes = node.envelopes("shared", 1).await;
    assert_eq!(
        envelopes[0].recipient, "josé@bücher.example",
        "nothing published before it"
    );
    let events = node.events(1).await;
    assert_eq!(events[0].recipient, "josé@bücher.example");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_is_unavailable_and_a_full_queue_is_resource_exhausted() {
    let down = Options {
        brokers: Some("127.0.0.1:1".into()),
        publish_timeout_ms: 1500,
        ..Options::default()
    };
    let node = common::start(down.clone()).await;
    let mut client = connect(&node).await;
    let err = client
        .send(authed(marker(), ACME_KEY))
        .await
        .expect_err("kafka down");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("Kafka"), "{}", err.message());
    assert!(
        err.message().contains("durable message ids: []"),
        "{}",
        err.message()
    );
    node.stop().await;

    let full = Options {
        max_queued_records: 1,
        ..down
    };
    let node = common::start(full).await;
    let mut client = connect(&node).await;
    let err = client
        .send(authed(marker(), ACME_KEY))
        .await
        .expect_err("queue full");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_quota_is_enforced_per_tenant() {
    let node = common::start(Options {
        globex_quota: 2,
        ..Options::default()
    })
    .await;
    let mut client = connect(&node).await;
    let mut request = template_request(vec![
        recipient("a@example.org", "A"),
        recipient("b@example.org", "B"),
    ]);
    request.from = "hello@globex.example".into();
    client
        .send(authed(request.clone(), GLOBEX_KEY))
        .await
        .expect("within quota");
    let err = client
        .send(authed(request, GLOBEX_KEY))
        .await
        .expect_err("over quota");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("globex"), "{}", err.message());
    client
        .send(authed(marker(), ACME_KEY))
        .await
        .expect("other tenants unaffected");
    node.stop().await;
}

/// The key is checked before the body is decoded: a unary call without a
/// key whose body announces a message and then stalls is answered
/// UNAUTHENTICATED at once (a server decoding first would wait for the
/// body). Raw HTTP/2, so the body can stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_key_is_refused_before_its_body_is_read() {
    let node = common::start(Options::default()).await;
    let tcp = tokio::net::TcpStream::connect(node.grpc)
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = axum::http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/sluice.v1.Ingest/Send", node.grpc))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut body) = client.send_request(request, false).expect("send");
    // A frame header announcing 1 MiB, and three bytes of it.
    let stalled = bytes::Bytes::from_static(&[0, 0, 0x10, 0, 0, 1, 2, 3]);
    body.send_data(stalled, false).expect("data");
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response)
        .await
        .expect("answered without the rest of the body")
        .expect("response");
    let status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(
        status.as_deref(),
        Some("16"),
        "UNAUTHENTICATED: {response:?}"
    );
    driver.abort();
    node.stop().await;
}
