//! `sluice dev` closes the suppression loop: the real binary sends to an
//! address the ISP simulator rejects with `550 5.1.1`; once the recorder has
//! the hard bounce, a second submission to that address is answered
//! `suppressed` and the simulator never sees a second attempt. Control's
//! suppression calls read and write that same list (one list per tenant).
//! Every gRPC listener answers `grpc.health.v1` and describes itself through
//! gRPC server reflection, both without credentials.

use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{
    EventKind, GetMessageRequest, RemoveSuppressionRequest, SendResponse, Suppression,
};
use sluice_testkit::dev::{dev_config, send_request, start_dev};
use sluice_testkit::sender::start_sim;

const SCENARIO: &str = r#"
seed = 7

[[provider]]
name = "bouncy"
listen = "127.0.0.2:0"
domains = ["bouncy.test"]
unknown_users = ["ghost"]
"#;

const GHOST: &str = "ghost@bouncy.test";

async fn send(client: &mut IngestClient<tonic::transport::Channel>, to: &[&str]) -> SendResponse {
    let to: Vec<String> = to.iter().map(|a| (*a).to_owned()).collect();
    let request = send_request("loop@sluice.test", &to, "suppression loop");
    client.send(request).await.expect("send").into_inner()
}

/// Waits until the Query service reports `message_id` in `state`, asking
/// with `token`.
async fn wait_for_state(query: &str, token: &str, message_id: &str, state: EventKind) {
    let mut client = sluice_testkit::query::client(query, Some(token))
        .await
        .expect("connect query");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = GetMessageRequest {
            message_id: message_id.into(),
        };
        if let Ok(status) = client.get_message(request).await
            && status.into_inner().state() == state
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "message {message_id} never reached {state:?} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 5xx replies the simulator gave (the unknown user's `550 5.1.1`).
fn rejected(report: &sluice_sim::Report) -> u64 {
    let sources = report.providers.iter().flat_map(|p| &p.sources);
    sources.map(|s| s.rejected).sum()
}

fn arrived(report: &sluice_sim::Report, address: &str) -> bool {
    let recipients = report.messages.iter().flat_map(|m| &m.recipients);
    recipients.into_iter().any(|r| r == address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_bounced_address_is_suppressed_on_the_next_submission() {
    let sim = start_sim(SCENARIO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    let config = dev_config(dir.path(), &sim, "bouncy", "bouncy.test", "");
    std::fs::write(&file, config).expect("write config");
    let dev = start_dev(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &file).await;
    let (mut child, query) = (dev.child, dev.query.clone());
    let mut client = IngestClient::connect(dev.ingest.clone())
        .await
        .expect("connect ingest");

    for (url, service) in [
        (dev.ingest.clone(), "sluice.v1.Ingest"),
        (query.clone(), "sluice.v1.Query"),
        (format!("http://{}", dev.control), "sluice.v1.Control"),
        (dev.ingest.clone(), ""),
    ] {
        assert_serving(&url, service).await;
        if !service.is_empty() {
            assert_reflected(&url, service).await;
        }
    }

    // Query takes the admin token dev made for control.
    let token = std::fs::read_to_string(dir.path().join("data/control.token"))
        .expect("dev's control.token");
    let token = token.trim();

    let first = send(&mut client, &[GHOST]).await;
    assert!(!first.recipients[0].suppressed, "not suppressed yet");
    let first_id = &first.recipients[0].message_id;
    let mut anonymous = sluice_testkit::query::client(&query, None)
        .await
        .expect("connect query");
    let refused = anonymous
        .get_message(GetMessageRequest {
            message_id: first_id.clone(),
        })
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    wait_for_state(&query, token, first_id, EventKind::Bounced).await;
    // The dev tenant's API key reads its own message.
    wait_for_state(&query, "sluice-dev-key", first_id, EventKind::Bounced).await;
    assert_eq!(
        rejected(&sim.snapshot()),
        1,
        "one 550 for the first attempt"
    );

    // Mixed case: suppressions compare lowercase.
    let second = send(&mut client, &["Ghost@Bouncy.test", "friend@bouncy.test"]).await;
    let flags: Vec<bool> = second.recipients.iter().map(|r| r.suppressed).collect();
    assert_eq!(flags, [true, false], "{second:?}");
    // The friend's copy arriving proves the sender has handled the second
    // submission: had the ghost's been published, it would have gone too.
    let friend = &second.recipients[1].message_id;
    wait_for_state(&query, token, friend, EventKind::Delivered).await;
    let ghost = &second.recipients[0].message_id;
    wait_for_state(&query, token, ghost, EventKind::Suppressed).await;

    one_list_through_control(&dev.control, token, &mut client).await;
    child.start_kill().expect("stop");
    child.wait().await.expect("reaped");
    let report = sim.shutdown().await;
    assert!(arrived(&report, "friend@bouncy.test"), "{report}");
    assert_eq!(
        rejected(&report),
        1,
        "the simulator saw a second attempt to {GHOST}:\n{report}"
    );
}

/// Control lists what the recorder learned, and what control adds or
/// removes is what ingest checks on the next submission.
async fn one_list_through_control(
    addr: &str,
    token: &str,
    ingest: &mut IngestClient<tonic::transport::Channel>,
) {
    let mut control = sluice_control_client::client(&format!("http://{addr}"), Some(token))
        .await
        .expect("connect control");
    assert_eq!(
        sluice_testkit::dev::suppressions(&mut control).await,
        [(GHOST.to_owned(), "hard_bounce".to_owned())],
        "control lists the recorder's suppression"
    );
    let manual = Suppression {
        tenant: "dev".into(),
        address: "Manual@Bouncy.test".into(),
        reason: "manual".into(),
        created_at: None,
    };
    control.add_suppression(manual).await.expect("add");
    let ghost = (GHOST.to_owned(), "hard_bounce".to_owned());
    let manual = ("manual@bouncy.test".to_owned(), "manual".to_owned());
    assert_eq!(
        sluice_testkit::dev::suppressions(&mut control).await,
        [ghost.clone(), manual.clone()]
    );
    let held = send(ingest, &[&manual.0]).await;
    assert!(
        held.recipients[0].suppressed,
        "ingest checks what control added"
    );

    let removed = control
        .remove_suppression(RemoveSuppressionRequest {
            tenant: "dev".into(),
            address: manual.0.clone(),
        })
        .await
        .expect("remove");
    assert!(removed.into_inner().removed);
    assert_eq!(
        sluice_testkit::dev::suppressions(&mut control).await,
        [ghost]
    );
    let sent = send(ingest, &[&manual.0]).await;
    assert!(
        !sent.recipients[0].suppressed,
        "ingest no longer holds what control removed"
    );
}

/// `grpc.health.v1` at `url` says `service` is SERVING, asked without
/// credentials (as a probe asks).
async fn assert_serving(url: &str, service: &str) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("URL")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: service.into(),
    };
    let answer = client
        .check(request)
        .await
        .unwrap_or_else(|e| panic!("health of {service:?} at {url}: {e}"));
    assert_eq!(
        answer.into_inner().status(),
        ServingStatus::Serving,
        "{service:?} at {url}"
    );
}

/// Server reflection at `url` lists `service` and the health service, asked
/// without credentials (as grpcurl asks).
async fn assert_reflected(url: &str, service: &str) {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("URL")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap_or_else(|e| panic!("reflection at {url}: {e}"))
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("reflection answer")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.iter().any(|n| n == service), "{url}: {names:?}");
    assert!(
        names.iter().any(|n| n == "grpc.health.v1.Health"),
        "{url}: {names:?}"
    );
}
