//! Traces across processes (issue #16): an `sluice ingest`, an `sluice
//! sender` and an `sluice recorder`, each its own process on real Kafka and
//! Cassandra, export spans over OTLP to a collector in this test. One
//! message's trace must hold the spans of all three, each joined to its
//! parent across the process boundaries (gRPC metadata from the client,
//! Kafka record headers between the roles). The sampling ratio is 0: only
//! messages that ask to be traced (a sampled `traceparent` from the caller,
//! or `sluice-trace: 1`) are exported, and an ordinary one is not.

use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_testkit::cluster::{
    Tokens, cluster_names, configure, follow_toml, follower_sender_toml, free_addr, ingest_toml,
    numbered_send, recorder_toml, spawn_role, start_control, wait_listening, write,
};
use sluice_testkit::otlp::{Collector, Received};
use sluice_testkit::sender::{kafka, kafka_log, start_sim};

const SCENARIO: &str = r#"
[[provider]]
name = "gmail"
style = "gmail"
listen = "127.0.0.2:0"
domains = ["gmail.test"]
"#;

const BINARY: &str = env!("CARGO_BIN_EXE_sluice");

type Ingest = IngestClient<tonic::transport::Channel>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends message `n`, with `metadata` added; its message id.
async fn send(ingest: &mut Ingest, n: usize, metadata: &[(&'static str, String)]) -> String {
    let mut request = numbered_send(n);
    for (key, value) in metadata {
        request
            .metadata_mut()
            .insert(*key, value.parse().expect("metadata value"));
    }
    let response = ingest.send(request).await.expect("send").into_inner();
    response.recipients[0].message_id.clone()
}

/// Waits until `found` picks something from the collector's spans.
async fn wait_for<T>(
    collector: &Collector,
    what: &str,
    found: impl Fn(&[Received]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let spans = collector.spans();
        if let Some(out) = found(&spans) {
            return out;
        }
        if Instant::now() > deadline {
            let names: Vec<_> = spans.iter().map(|s| (&s.service, &s.name)).collect();
            panic!("{what}: not among the spans received within 90 s: {names:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn named<'a>(spans: &'a [Received], service: &str, name: &str) -> Vec<&'a Received> {
    spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect()
}

fn for_message<'a>(spans: &'a [Received], name: &str, id: &str) -> Option<&'a Received> {
    spans
        .iter()
        .find(|s| s.name == name && s.attribute("message_id") == Some(id))
}

/// The recorder's span of the event the attempt `attempt` published (the
/// recorder also writes the `accepted` event ingest published).
fn recorded_after<'a>(spans: &'a [Received], attempt: &Received) -> Option<&'a Received> {
    spans
        .iter()
        .find(|s| s.name == "recorder.record" && s.parent_span_id == attempt.span_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_is_one_trace_across_ingest_sender_and_recorder() {
    let kafka = kafka().await;
    let _log = kafka_log(&kafka).await;
    let (_session, keyspace) = sluice_testkit::cql::migrated_keyspace("traces").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let tokens = Tokens::new(d);
    let names = cluster_names();
    let sim = start_sim(SCENARIO).await;
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    let tracing_env = [
        ("SLUICE_OTLP_ENDPOINT", endpoint.as_str()),
        ("SLUICE_TRACE_SAMPLE", "0"),
    ];

    let (control, _control) = start_control(BINARY, d, &keyspace, &tokens).await;
    configure(control, &tokens, &names.pool, 1, 6000).await;
    let follow = follow_toml(&[control], &tokens);

    let query = free_addr();
    let recorder = recorder_toml(query, &kafka.brokers, &keyspace, &names, &tokens);
    let path = write(d, "recorder.toml", &recorder);
    let _recorder = spawn_role(BINARY, "recorder", &path, &tracing_env, "warn");
    let sender = follower_sender_toml(&names, &sim, &kafka.brokers, &follow);
    let path = write(d, "sender.toml", &sender);
    let _sender = spawn_role(BINARY, "sender", &path, &tracing_env, "warn");
    let grpc = free_addr();
    let ingest = ingest_toml(grpc, &kafka.brokers, &names, &follow, "");
    let path = write(d, "ingest.toml", &ingest);
    let _ingest = spawn_role(BINARY, "ingest", &path, &tracing_env, "warn");
    wait_listening(grpc, "sluice ingest", Duration::from_secs(60)).await;
    let mut client = IngestClient::connect(format!("http://{grpc}"))
        .await
        .expect("ingest");

    // 1. The caller's own trace, sampled: Sluice's spans join it.
    let caller_trace: [u8; 16] = *uuid::Uuid::new_v4().as_bytes();
    let caller_span: [u8; 8] = uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap();
    let parent = format!("00-{}-{}-01", hex(&caller_trace), hex(&caller_span));
    let joined = send(&mut client, 1, &[("traceparent", parent)]).await;
    // (Alone, so its attempt opens the connection the others may reuse.)

    let record = wait_for(
        &collector,
        "the sender's and recorder's spans of message 1",
        |spans| recorded_after(spans, for_message(spans, "sender.attempt", &joined)?).cloned(),
    )
    .await;
    let spans = collector.spans();
    let accept = named(&spans, "sluice-ingest", "ingest.accept")
        .into_iter()
        .find(|s| s.trace_id == caller_trace)
        .expect("ingest's span of message 1 in the caller's trace");
    assert_eq!(
        accept.parent_span_id, caller_span,
        "child of the caller's span"
    );
    let child_of = |name: &str, parent: &Received| {
        spans
            .iter()
            .find(|s| s.name == name && s.parent_span_id == parent.span_id)
            .unwrap_or_else(|| panic!("no {name} span under {}", parent.name))
            .clone()
    };
    let append = child_of("log.append", accept);
    child_of("dkim.sign", accept);
    // The `accepted` event ingest published, as the recorder wrote it.
    let accepted = child_of("recorder.record", &append);
    assert_eq!(accepted.service, "sluice-recorder");
    let attempt = for_message(&spans, "sender.attempt", &joined).expect("attempt of message 1");
    assert_eq!(attempt.service, "sluice-sender");
    assert_eq!(
        attempt.trace_id, caller_trace,
        "the sender's span is in the same trace"
    );
    assert_eq!(
        attempt.parent_span_id, append.span_id,
        "via the outbound record's header"
    );
    let connect = child_of("smtp.connect", attempt);
    child_of("smtp.dial", &connect);
    child_of("smtp.greeting", &connect);
    child_of("smtp.transaction", attempt);
    assert!(
        attempt
            .attribute("reply")
            .is_some_and(|r| r.starts_with("250")),
        "the attempt records the reply: {:?}",
        attempt.attribute("reply")
    );
    assert_eq!(record.service, "sluice-recorder");
    assert_eq!(record.trace_id, caller_trace);
    assert_eq!(record.attribute("message_id"), Some(joined.as_str()));

    // 2. Asked for by flag, no caller context: a trace of its own.
    let flagged = send(&mut client, 2, &[("sluice-trace", "1".into())]).await;
    // 3. Neither: the ratio (0) says no.
    let plain = send(&mut client, 3, &[]).await;
    let record = wait_for(
        &collector,
        "the sender's and recorder's spans of message 2",
        |spans| recorded_after(spans, for_message(spans, "sender.attempt", &flagged)?).cloned(),
    )
    .await;
    let spans = collector.spans();
    let attempt = for_message(&spans, "sender.attempt", &flagged).expect("attempt of message 2");
    let root = spans
        .iter()
        .find(|s| s.name == "ingest.accept" && s.trace_id == attempt.trace_id)
        .expect("ingest's span of message 2");
    assert!(root.parent_span_id.is_empty(), "a root of its own");
    assert_eq!(root.attribute("sluice.force_trace"), Some("true"));
    assert_eq!(record.trace_id, attempt.trace_id);

    // The plain message was delivered and recorded, but nothing of it was
    // exported: wait for its delivery plus two export periods.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.snapshot().messages.len() < 3 {
        assert!(Instant::now() < deadline, "message 3 was not delivered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spans = collector.spans();
    assert!(
        for_message(&spans, "sender.attempt", &plain).is_none(),
        "an unsampled message's attempt was exported"
    );
    let traces: std::collections::HashSet<_> = spans.iter().map(|s| s.trace_id.clone()).collect();
    assert_eq!(traces.len(), 2, "only the two traced messages' traces");
}
