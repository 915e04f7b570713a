//! A receiver that never answers holds up no other tenant's webhook, on
//! the real `sluice dev`: webhook `slow` leads to a socket that accepts
//! and stays silent (every post times out), webhook `fast` to the Python
//! receiver of docs/examples. With 4 posts in flight at most, of which 2
//! per webhook, all 40 events reach `fast` within seconds; without the
//! per-webhook cap, `slow`'s 3-second timeouts would take every slot and
//! `fast` would wait about 30 s.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_testkit::cluster::free_addr;
use sluice_testkit::dev::{dev_config, send_request, start_dev};
use sluice_testkit::http::{request, status};
use sluice_testkit::sender::{INBOX, start_sim};
use sluice_testkit::webhooks::{SECRET, ids, receiver};

const WEBHOOKS: &str = r#"
[webhooks]
timeout = "3s"
max_concurrent_posts = 4
max_posts_per_webhook = 2
retry_delays = ["30s"]
"#;

/// Accepts connections and never answers; holds them until dropped.
async fn silent_receiver() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

async fn register(http: &str, id: &str, url: &str) {
    let body = format!(r#"{{"url": "{url}", "events": ["accepted"], "secret": "{SECRET}"}}"#);
    let headers = [
        "authorization: Bearer sluice-dev-key",
        "content-type: application/json",
    ];
    let path = format!("/v1/webhooks/{id}");
    let answer = request(http, "PUT", &path, &headers, body.as_bytes()).await;
    assert_eq!(status(&answer), 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_receiver_does_not_hold_up_another_webhook() {
    let sim = start_sim(INBOX).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let port = free_addr().port();
    let _fast = receiver(root, port, 0).await;
    let (silent, _slow) = silent_receiver().await;
    let file = root.join("dev.toml");
    std::fs::write(
        &file,
        dev_config(root, &sim, "inbox", "inbox.test", WEBHOOKS),
    )
    .expect("cfg");
    let dev = start_dev(Path::new(env!("CARGO_BIN_EXE_sluice")), &file).await;
    register(&dev.http, "slow", &format!("http://{silent}/hook")).await;
    register(&dev.http, "fast", &format!("http://127.0.0.1:{port}/hook")).await;
    // The dispatcher follows control's watch stream.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut ingest = IngestClient::connect(dev.ingest.clone())
        .await
        .expect("ingest");
    let started = Instant::now();
    for batch in 0..4 {
        let to: Vec<String> = (0..10)
            .map(|i| format!("b{batch}-{i}@inbox.test"))
            .collect();
        let sent = ingest
            .send(send_request("hooks@sluice.test", &to, "isolation"))
            .await
            .expect("send")
            .into_inner();
        assert_eq!(sent.recipients.len(), 10);
    }
    let deadline = started + Duration::from_secs(12);
    while ids(root, Some("accepted")).len() < 40 {
        assert!(
            Instant::now() < deadline,
            "only {} of 40 events reached the healthy webhook within 12 s",
            ids(root, Some("accepted")).len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "all 40 events at the healthy webhook {:.1} s after the first send",
        started.elapsed().as_secs_f64()
    );
}
