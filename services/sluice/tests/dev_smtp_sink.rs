//! What a receiver nobody here wrote got: the real `sluice dev` relays
//! distinct messages into Postfix's `smtp-sink` (apt package `postfix`,
//! installed by deploy/test.sh), and the sink's own dump holds each
//! recipient exactly once — nothing lost, nothing sent twice.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_testkit::dev::{send_request, sink_dev_config, start_dev};
use sluice_testkit::smtp_sink::Sink;

const MESSAGES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_sink_receives_every_message_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    // smtp-sink runs as the postfix user and writes under this directory.
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(dir.path(), open).expect("chmod");
    let mut sink = Sink::start(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("dev.toml");
    std::fs::write(&file, sink_dev_config(dir.path(), sink.port, 8, "")).expect("config");
    let dev = start_dev(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &file).await;
    let mut client = IngestClient::connect(dev.ingest.clone())
        .await
        .expect("connect");

    let mut sent = BTreeSet::new();
    for batch in 0..MESSAGES / 10 {
        let to: Vec<String> = (0..10)
            .map(|i| format!("user{batch}-{i}@sink.test"))
            .collect();
        let request = send_request("relay@sluice.test", &to, &format!("batch {batch}"));
        let answer = client.send(request).await.expect("send").into_inner();
        assert_eq!(answer.recipients.len(), 10);
        sent.extend(to);
    }

    let waited = sink
        .wait_for(MESSAGES as u64, Duration::from_secs(120))
        .await;
    waited.unwrap_or_else(|e| panic!("{e}"));
    // A message sent twice would arrive after the last expected one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sink.count().expect("count"),
        MESSAGES as u64,
        "the sink got extra mail"
    );
    let received = sink.recipients().expect("recipients");
    let unique: BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(received.len(), unique.len(), "a recipient received twice");
    assert_eq!(unique, sent, "the sink got exactly the recipients sent to");
    let mut child = dev.child;
    child.start_kill().expect("stop");
    child.wait().await.expect("reaped");
}
