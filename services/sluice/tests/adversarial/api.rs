//! Probes of the gRPC and HTTP front doors, Query and Control.

use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::send_request::Content;
use sluice_proto::v1::{
    GetMessageRequest, Recipient, SendRequest, Template, WarmupPlan, WarmupStep, WatchRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{DEV_KEY, RIVAL_KEY, Target};

fn authorized<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {key}").parse().expect("metadata");
    request.metadata_mut().insert("authorization", value);
    request
}

fn templated(from: &str, to: &str, text: &str) -> SendRequest {
    SendRequest {
        from: from.into(),
        recipients: vec![Recipient {
            address: to.into(),
            ..Default::default()
        }],
        content: Some(Content::Template(Template {
            subject: "probe".into(),
            text: text.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

async fn ingest(target: &Target) -> IngestClient<tonic::transport::Channel> {
    IngestClient::connect(target.ingest.clone())
        .await
        .expect("connect ingest")
}

/// Query and Control refuse callers without credentials; a tenant's key
/// reads only its own messages (another tenant's message answers exactly
/// as an unknown id does) and opens nothing on Control.
pub async fn credentials(target: &Target) {
    let mut client = ingest(target).await;
    let sent = client
        .send(authorized(
            templated("a@sluice.test", "auth-probe@flow.test", "hi"),
            DEV_KEY,
        ))
        .await
        .expect("the dev tenant sends")
        .into_inner();
    let id = sent.recipients[0].message_id.clone();
    let get = |id: &str| GetMessageRequest {
        message_id: id.to_owned(),
    };
    let mut anonymous = sluice_testkit::query::client(&target.query, None)
        .await
        .expect("connect query");
    let refused = anonymous.get_message(get(&id)).await.expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    let mut rival = sluice_testkit::query::client(&target.query, Some(RIVAL_KEY))
        .await
        .expect("connect query");
    let foreign = rival.get_message(get(&id)).await.expect_err("foreign");
    let unknown = rival
        .get_message(get("01JAAAAAAAAAAAAAAAAAAAAAAA"))
        .await
        .expect_err("unknown");
    assert_eq!(foreign.code(), tonic::Code::NotFound, "{foreign}");
    assert_eq!(foreign.code(), unknown.code());
    assert!(
        !foreign.message().contains("dev") && !foreign.message().contains("flow.test"),
        "the refusal names nothing of the other tenant: {foreign}"
    );
    let control = format!("http://{}", target.control);
    for token in [None, Some(DEV_KEY), Some("not-a-token")] {
        let mut c = sluice_control_client::client(&control, token)
            .await
            .expect("connect control");
        let plan = WarmupPlan {
            name: "stolen".into(),
            steps: vec![WarmupStep {
                day: 1,
                daily_cap: 10,
                ..Default::default()
            }],
        };
        let err = c.put_warmup_plan(plan).await.expect_err("refused");
        assert!(
            matches!(
                err.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ),
            "{token:?}: {err}"
        );
    }
}

/// A raw HTTP request head.
fn head(path: &str, key: Option<&str>, length: usize) -> String {
    let auth = key.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nhost: probe\r\n{auth}content-type: application/json\r\n\
         content-length: {length}\r\n\r\n"
    )
}

/// Sends `head`, then `body`; returns the first bytes of the answer (empty
/// when the connection was closed without one).
async fn raw_http(target: &Target, head: &str, body: &[u8], wait: Duration) -> String {
    let mut conn = TcpStream::connect(target.http).await.expect("connect HTTP");
    conn.write_all(head.as_bytes()).await.expect("write head");
    let _ = conn.write_all(body).await;
    let mut answer = vec![0u8; 1024];
    match tokio::time::timeout(wait, conn.read(&mut answer)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&answer[..n]).into_owned(),
        Ok(Err(_)) => String::new(),
        Err(_) => panic!("no answer within {wait:?} to {head:?}"),
    }
}

/// Work before authentication: twelve requests at once (of the 16
/// connections one address may hold) announcing 50 MB bodies without a key
/// are answered 401 from their heads and the start of their bodies, and a
/// gRPC call with a 900 KB body and no key is refused before it is decoded.
pub async fn before_authentication(target: &Target) {
    let junk = vec![b'x'; 64 * 1024];
    let floods = (0..12).map(|_| {
        let head = head("/v1/messages", None, 50 * 1024 * 1024);
        let junk = junk.clone();
        async move { raw_http(target, &head, &junk, Duration::from_secs(5)).await }
    });
    for answer in futures::future::join_all(floods).await {
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
    let mut client = ingest(target).await;
    let big = templated("a@sluice.test", "x@flow.test", &"y".repeat(900 * 1024));
    let err = client.send(big).await.expect_err("no key");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
}

/// Slow clients: a body trickled past `limits.body_timeout` (2 s here) is
/// answered 408, a unary gRPC message stalled as long is answered with an
/// error status; a request head trickled past 10 s loses its connection.
pub async fn slow_clients(target: &Target) {
    let trickle_body = async {
        let started = Instant::now();
        let mut conn = TcpStream::connect(target.http).await.expect("connect");
        let head = head("/v1/messages", Some(DEV_KEY), 1000);
        conn.write_all(head.as_bytes()).await.expect("head");
        conn.write_all(b"{\"from\":").await.expect("some body");
        let mut answer = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(6), conn.read(&mut answer))
            .await
            .expect("answered within 6 s")
            .expect("read");
        (
            String::from_utf8_lossy(&answer[..n]).into_owned(),
            started.elapsed(),
        )
    };
    let trickle_head = async {
        let mut conn = TcpStream::connect(target.http).await.expect("connect");
        let started = Instant::now();
        for byte in b"POST /v1/messages HTTP/1.1\r\nhost: a-very-slow-client\r\n" {
            if conn.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let mut rest = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut rest)).await;
        started.elapsed()
    };
    let ((body_answer, body_held), head_cut, grpc_held) =
        tokio::join!(trickle_body, trickle_head, stalled_grpc_body(target));
    assert!(
        grpc_held < Duration::from_secs(6),
        "a stalled gRPC message held its place {grpc_held:?}"
    );
    assert!(body_answer.starts_with("HTTP/1.1 408"), "{body_answer}");
    assert!(
        body_held < Duration::from_secs(6),
        "the slow body held its place {body_held:?}"
    );
    assert!(
        head_cut < Duration::from_secs(20),
        "a trickled head kept its connection for {head_cut:?}"
    );
}

/// A `Send` with a valid key whose message announces 1 MiB and stalls
/// after three bytes (raw HTTP/2): answered with an error status once the
/// body deadline passes. Returns how long the call was held.
async fn stalled_grpc_body(target: &Target) -> Duration {
    let addr = target.ingest.trim_start_matches("http://");
    let tcp = TcpStream::connect(addr).await.expect("connect gRPC");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = tonic::codegen::http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/sluice.v1.Ingest/Send"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {DEV_KEY}"))
        .body(())
        .expect("request");
    let started = Instant::now();
    let (response, mut body) = client.send_request(request, false).expect("send");
    let stalled = bytes::Bytes::from_static(&[0, 0, 0x10, 0, 0, 1, 2, 3]);
    body.send_data(stalled, false).expect("data");
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("answered while the body stalls")
        .expect("response");
    let held = started.elapsed();
    let mut status = response.headers().get("grpc-status").cloned();
    if status.is_none() {
        let mut body = response.into_body();
        while body.data().await.is_some() {}
        let trailers = body.trailers().await.ok().flatten();
        status = trailers.and_then(|t| t.get("grpc-status").cloned());
    }
    let status = status.expect("a grpc-status");
    assert_ne!(status, "0", "a stalled message was accepted");
    driver.abort();
    held
}

/// Connections: one client address gets at most
/// `limits.max_connections_per_ip` (16 here) of one listener; the others
/// are closed on arrival.
pub async fn connection_flood(target: &Target) {
    let addr: std::net::SocketAddr = target
        .ingest
        .trim_start_matches("http://")
        .parse()
        .expect("gRPC address");
    let mut held = Vec::new();
    let mut closed = 0;
    for _ in 0..60 {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), conn.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            _ => held.push(conn),
        }
    }
    assert!(
        held.len() <= 16,
        "{} connections of one address were kept",
        held.len()
    );
    assert!(closed >= 44, "only {closed} of 60 connections were closed");
}

/// Requests in progress: with `limits.max_requests` 4, four HTTP requests
/// holding their bodies keep the listener's places and the fifth is
/// answered 503 with `Retry-After` at once; the places come back.
pub async fn shedding(target: &Target) {
    let mut holders = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(target.http).await.expect("connect");
        let head = head("/v1/messages", Some(DEV_KEY), 1000);
        conn.write_all(head.as_bytes()).await.expect("head");
        conn.write_all(b"{").await.expect("a byte of body");
        holders.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let body = serde_json::json!({
        "from": "a@sluice.test",
        "recipients": [{ "address": "shed@flow.test" }],
        "template": { "subject": "s", "text": "t" }
    })
    .to_string();
    let busy = raw_http(
        target,
        &head("/v1/messages", Some(DEV_KEY), body.len()),
        body.as_bytes(),
        Duration::from_secs(1),
    )
    .await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(
        busy.to_ascii_lowercase().contains("retry-after: 1"),
        "{busy}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(holders);
    // The bodies' timeout (2 s) frees the places at the latest.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let again = raw_http(
            target,
            &head("/v1/messages", Some(DEV_KEY), body.len()),
            body.as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        if again.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "places never came back: {again}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Templates that would render gigabytes or loop without end are refused
/// with errors naming the field and the limit.
pub async fn template_bombs(target: &Target) {
    let mut client = ingest(target).await;
    let grow = templated("a@sluice.test", "x@flow.test", "{{ 'x' * 1000000000 }}");
    let err = client
        .send(authorized(grow, DEV_KEY))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("template.text"), "{err}");
    let loops = "{% for a in s %}{% for b in s %}{% for c in s %}xxxxxxxx\
                 {% endfor %}{% endfor %}{% endfor %}";
    let mut spin = templated("a@sluice.test", "x@flow.test", loops);
    spin.recipients[0]
        .substitutions
        .insert("s".into(), "a".repeat(1000));
    let err = client
        .send(authorized(spin, DEV_KEY))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("recipients[0]"), "{err}");
}

/// Headers are parsed, not pattern-matched: several `From` mailboxes and
/// receiver-only headers are refused; `send_at` a century ahead is refused
/// without a panic, and its idempotency key is not left stuck.
pub async fn forged_headers_and_time(target: &Target) {
    let mut client = ingest(target).await;
    let raw = |headers: &str| SendRequest {
        recipients: vec![Recipient {
            address: "x@flow.test".into(),
            ..Default::default()
        }],
        content: Some(Content::Raw(
            format!("{headers}Subject: s\r\n\r\nbody\r\n").into_bytes(),
        )),
        ..Default::default()
    };
    for (headers, field) in [
        ("From: a@sluice.test, boss@bank.example\r\n", "From"),
        ("From: (a@sluice.test) boss@bank.example\r\n", "From"),
        (
            "From: a@sluice.test\r\nReceived: from trusted.example\r\n",
            "Received",
        ),
    ] {
        let err = client
            .send(authorized(raw(headers), DEV_KEY))
            .await
            .expect_err(headers);
        assert!(
            matches!(
                err.code(),
                tonic::Code::InvalidArgument | tonic::Code::PermissionDenied
            ),
            "{headers:?}: {err}"
        );
        assert!(err.message().contains(field), "{headers:?}: {err}");
    }
    let mut later = templated("a@sluice.test", "later@flow.test", "t");
    later.idempotency_key = "century-probe".into();
    later.send_at = Some(prost_types::Timestamp {
        seconds: 4_102_444_800 + 100 * 365 * 86_400,
        nanos: 0,
    });
    let err = client
        .send(authorized(later.clone(), DEV_KEY))
        .await
        .expect_err("a century ahead");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("send_at"), "{err}");
    later.send_at = None;
    client
        .send(authorized(later, DEV_KEY))
        .await
        .expect("the same idempotency key works once the request is valid");
}

/// Control keeps records and watchers bounded: an oversized plan is
/// refused naming the limit, Watch streams beyond `max_watchers` are
/// refused, and a place freed is usable again.
pub async fn control_bounds(target: &Target) {
    let control = format!("http://{}", target.control);
    let mut c = sluice_control_client::client(&control, Some(&target.token))
        .await
        .expect("connect control");
    let steps = (1..=5000)
        .map(|day| WarmupStep {
            day,
            daily_cap: 100,
            ..Default::default()
        })
        .collect();
    let huge = WarmupPlan {
        name: "huge".into(),
        steps,
    };
    let err = c.put_warmup_plan(huge).await.expect_err("too many steps");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("steps"), "{err}");
    let mut streams = Vec::new();
    let mut refused = None;
    for n in 0..10 {
        let request = WatchRequest {
            node: format!("probe-{n}"),
            after_revision: 0,
        };
        match c.watch(request).await {
            Ok(stream) => streams.push(stream),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    let refused = refused.expect("a Watch beyond max_watchers is refused");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let again = WatchRequest {
            node: "probe-again".into(),
            after_revision: 0,
        };
        match c.watch(again).await {
            Ok(_) => break,
            Err(err) => assert!(
                Instant::now() < deadline,
                "a freed place never came back: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
