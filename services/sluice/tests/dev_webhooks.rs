//! Webhooks on the real `sluice dev` (one registered by the tenant through
//! ingest's API, one by an operator), posted to the Python receiver of
//! docs/examples, which keeps only posts whose signature verifies: every
//! event a webhook takes arrives, signed, after the receiver refused the
//! first posts (retried from a retry topic); events whose posts were
//! failing when the process was killed with -9 arrive after the restart;
//! a late bounce to the inbound MX, which names only its message, arrives
//! with the tenant and recipient from the message's history;
//! a webhook whose receiver never answers is disabled after the retry
//! window, and the tenant's other webhook is told with a
//! `webhook_disabled` event. Every attempt is in the webhooks' delivery
//! logs, read through Query.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_proto::v1::ListWebhookDeliveriesRequest;
use sluice_proto::v1::ingest_client::IngestClient;
use sluice_testkit::cluster::free_addr;
use sluice_testkit::dev::{Dev, dev_config, send_request, start_dev};
use sluice_testkit::http::{body, request, status};
use sluice_testkit::sender::{INBOX, start_sim};
use sluice_testkit::webhooks::{SECRET, received, receiver};
use tokio::process::Command;

const WEBHOOKS: &str = r#"
[webhooks]
retry_delays = ["1s", "2s"]
retry_window = "40s"
"#;

const DEV_KEY: &str = "sluice-dev-key";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice"))
}

/// `sluice admin ARGS` against dev's control; its standard output.
async fn admin(dev: &Dev, token: &str, args: &[&str]) -> String {
    let out = Command::new(binary())
        .args(["admin", "--endpoint", &format!("http://{}", dev.control)])
        .args(["--token", token])
        .args(args)
        .output()
        .await
        .expect("run sluice admin");
    assert!(
        out.status.success(),
        "sluice admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Distinct ids of the kept events of `kind`.
fn ids(dir: &Path, kind: &str) -> BTreeSet<String> {
    sluice_testkit::webhooks::ids(dir, Some(kind))
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Submits one message to each of `n` recipients as tenant dev.
async fn send(dev: &Dev, batch: &str, n: usize) {
    let mut client = IngestClient::connect(dev.ingest.clone())
        .await
        .expect("ingest");
    let to: Vec<String> = (0..n).map(|i| format!("{batch}-{i}@inbox.test")).collect();
    let answer = client
        .send(send_request("hooks@sluice.test", &to, batch))
        .await
        .expect("send")
        .into_inner();
    assert_eq!(answer.recipients.len(), n);
}

/// A DSN for the message to first-0 arrives at the inbound MX (the event
/// names only the message); the webhook gets it as `bounced` with the
/// tenant and recipient from the message's history.
async fn late_bounce(dev: &Dev, sim: &sluice_sim::SimHandle, root: &Path) {
    let to = "first-0@inbox.test";
    let deadline = Instant::now() + Duration::from_secs(60);
    let verp = loop {
        let seen = sim.snapshot().messages;
        if let Some(m) = seen.iter().find(|m| m.recipients.iter().any(|r| r == to)) {
            break m.mail_from.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the message to {to} never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message_id = verp
        .strip_prefix("bounce+")
        .and_then(|rest| rest.rsplit_once('-'))
        .map(|(id, _)| id.to_owned())
        .expect("a VERP return path");
    let dsn = format!(
        "From: MAILER-DAEMON@mx.inbox.test\r\nTo: {verp}\r\nSubject: Undelivered\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"R\"\r\n\r\n\
         --R\r\nContent-Type: text/plain\r\n\r\nGone.\r\n\
         --R\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.inbox.test\r\n\r\n\
         Final-Recipient: rfc822; {to}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 mailbox disabled\r\n\r\n--R--\r\n"
    );
    let mut mx = sluice_testkit::mx::Client::connect(&dev.inbound).await;
    assert!(mx.say("EHLO mx.inbox.test").await.starts_with("250"));
    assert!(mx.envelope(&verp).await.starts_with("250"));
    let answer = mx.data(&dsn).await;
    assert!(answer.starts_with("250"), "{answer}");
    wait_for(
        "the late bounce, completed",
        Duration::from_secs(60),
        || !ids(root, "bounced").is_empty(),
    )
    .await;
    let bounce = received(root)
        .into_iter()
        .find(|e| e["type"] == "bounced")
        .expect("bounced");
    assert_eq!(bounce["tenant"], "dev", "{bounce}");
    assert_eq!(bounce["recipient"], to, "{bounce}");
    assert_eq!(bounce["message_id"], message_id.as_str(), "{bounce}");
    assert_eq!(bounce["bounce_class"], "bad_mailbox", "{bounce}");
}

/// A call to ingest's webhook API as tenant dev; (status, body).
async fn api(http: &str, method: &str, path: &str, key: &str, body_: &str) -> (u16, String) {
    let auth = format!("authorization: Bearer {key}");
    let headers = [auth.as_str(), "content-type: application/json"];
    let answer = request(http, method, path, &headers, body_.as_bytes()).await;
    (status(&answer), body(&answer).to_owned())
}

/// The tenant puts webhook `good` through ingest: bad fields are refused
/// by name and change nothing; the list never shows the secret.
async fn tenant_registers(http: &str, url: &str) {
    let (code, text) = api(http, "GET", "/v1/webhooks", "not-a-key", "").await;
    assert_eq!(code, 401, "{text}");
    let hook = |url: &str, events: &str| {
        format!(r#"{{"url": "{url}", "events": [{events}], "secret": "{SECRET}"}}"#)
    };
    let kinds = r#""accepted", "bounced", "webhook_disabled""#;
    for (body_, field) in [
        (hook("ftp://x.example/", kinds), "url"),
        (hook(url, r#""accepted", "sent""#), "events[1]"),
        (hook(url, kinds).replace(SECRET, "short"), "secret"),
    ] {
        let (code, text) = api(http, "PUT", "/v1/webhooks/good", DEV_KEY, &body_).await;
        assert_eq!(code, 400, "{text}");
        assert!(text.contains(field), "{field}: {text}");
    }
    let (code, text) = api(http, "GET", "/v1/webhooks", DEV_KEY, "").await;
    assert_eq!((code, text.as_str()), (200, r#"{"webhooks":[]}"#));
    let (code, text) = api(http, "PUT", "/v1/webhooks/good", DEV_KEY, &hook(url, kinds)).await;
    assert_eq!(code, 200, "{text}");
    let (code, text) = api(http, "GET", "/v1/webhooks", DEV_KEY, "").await;
    assert_eq!(code, 200, "{text}");
    let listed: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(listed["webhooks"][0]["id"], "good", "{text}");
    assert_eq!(
        listed["webhooks"][0]["events"],
        serde_json::json!(["accepted", "bounced", "webhook_disabled"])
    );
    assert!(!text.contains(SECRET), "the secret was shown: {text}");
}

/// `request` with `key` in its `authorization` metadata.
fn keyed<T>(key: &str, mut request: tonic::Request<T>) -> tonic::Request<T> {
    let value = format!("Bearer {key}").parse().expect("metadata");
    request.metadata_mut().insert("authorization", value);
    request
}

/// The same through gRPC (`sluice.v1.TenantWebhooks`): the key is checked,
/// a bad field is refused by name, the secret never comes back, and a
/// webhook put and deleted there leaves `good` as it was.
async fn tenant_registers_over_grpc(ingest: &str, url: &str) {
    use sluice_proto::v1::tenant_webhooks_client::TenantWebhooksClient;
    use sluice_proto::v1::{
        DeleteTenantWebhookRequest, EventKind, ListTenantWebhooksRequest, PutTenantWebhookRequest,
    };
    let mut client = TenantWebhooksClient::connect(ingest.to_owned())
        .await
        .expect("ingest gRPC");
    let list = || tonic::Request::new(ListTenantWebhooksRequest {});
    let denied = client.list_webhooks(keyed("not-a-key", list())).await;
    assert_eq!(
        denied.expect_err("refused").code(),
        tonic::Code::Unauthenticated
    );
    let put = |url: &str| PutTenantWebhookRequest {
        id: "grpc".into(),
        url: url.into(),
        events: vec![EventKind::Bounced.into()],
        secret: SECRET.into(),
    };
    let bad = client
        .put_webhook(keyed(DEV_KEY, tonic::Request::new(put("ftp://x.example/"))))
        .await
        .expect_err("a bad URL is refused");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("url"), "{bad:?}");
    let stored = client
        .put_webhook(keyed(DEV_KEY, tonic::Request::new(put(url))))
        .await
        .expect("put")
        .into_inner();
    assert_eq!(
        (stored.id.as_str(), stored.events.as_slice()),
        ("grpc", &[EventKind::Bounced as i32][..])
    );
    let listed = client
        .list_webhooks(keyed(DEV_KEY, list()))
        .await
        .expect("list");
    let ids: Vec<String> = listed
        .into_inner()
        .webhooks
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["good", "grpc"]);
    for existed in [true, false] {
        let request = DeleteTenantWebhookRequest { id: "grpc".into() };
        let answer = client
            .delete_webhook(keyed(DEV_KEY, tonic::Request::new(request)))
            .await
            .expect("delete")
            .into_inner();
        assert_eq!(answer.deleted, existed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_kept_across_kill_9_and_disabled_when_dead() {
    let sim = start_sim(INBOX).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let port = free_addr().port();
    let dead = free_addr();
    let mut hook = receiver(root, port, 3).await;
    let file = root.join("dev.toml");
    std::fs::write(
        &file,
        dev_config(root, &sim, "inbox", "inbox.test", WEBHOOKS),
    )
    .expect("cfg");
    let mut dev = start_dev(binary(), &file).await;
    let token = std::fs::read_to_string(root.join("data/control.token")).expect("token");
    let token = token.trim();
    let secret_file = root.join("hook.secret").display().to_string();
    let url = format!("http://127.0.0.1:{port}/hook");
    // The tenant registers `good` itself, through ingest's API.
    tenant_registers(&dev.http, &url).await;
    tenant_registers_over_grpc(&dev.ingest, &url).await;
    let dead_url = format!("http://{dead}/nobody-listens");
    let put = [
        "webhook",
        "put",
        "dev",
        "dead",
        &dead_url,
        "--secret-file",
        &secret_file,
    ];
    admin(&dev, token, &[&put[..], &["--event", "accepted"]].concat()).await;
    let listed = admin(&dev, token, &["webhook", "list", "dev"]).await;
    assert!(
        listed.contains("good") && listed.contains("dead"),
        "{listed}"
    );
    assert!(!listed.contains(SECRET), "the secret was printed: {listed}");
    // The dispatcher follows control's watch stream.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The receiver refuses the first three posts: all five still arrive.
    send(&dev, "first", 5).await;
    wait_for(
        "five accepted events, verified",
        Duration::from_secs(60),
        || ids(root, "accepted").len() == 5,
    )
    .await;
    for event in received(root) {
        assert_eq!(event["tenant"], "dev", "{event}");
        assert!(
            event["message_id"].as_str().is_some_and(|m| !m.is_empty()),
            "{event}"
        );
    }

    late_bounce(&dev, &sim, root).await;

    // The receiver goes away; five more are accepted and their posts fail;
    // the whole process is killed with -9 while they wait to be retried.
    hook.kill().await.expect("stop the receiver");
    send(&dev, "second", 5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    dev.child.start_kill().expect("kill -9");
    let _ = dev.child.wait().await;
    assert_eq!(
        ids(root, "accepted").len(),
        5,
        "nothing arrived while nobody listened"
    );
    let mut hook = receiver(root, port, 0).await;
    let mut dev = start_dev(binary(), &file).await;
    wait_for(
        "all ten accepted events after the restart",
        Duration::from_secs(60),
        || ids(root, "accepted").len() == 10,
    )
    .await;

    // Again, with a clean stop (SIGTERM): retries waiting end at once,
    // unsettled, and are read again after the restart.
    hook.kill().await.expect("stop the receiver");
    send(&dev, "third", 5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = dev.child.id().expect("pid").to_string();
    let stopped = Instant::now();
    let term = Command::new("kill").args(["-TERM", &pid]).status().await;
    assert!(term.expect("kill -TERM").success());
    let exit = tokio::time::timeout(Duration::from_secs(25), dev.child.wait()).await;
    assert!(
        exit.is_ok(),
        "sluice dev did not stop within 25 s of SIGTERM"
    );
    eprintln!(
        "sluice dev stopped {:.1} s after SIGTERM",
        stopped.elapsed().as_secs_f64()
    );
    assert_eq!(ids(root, "accepted").len(), 10);
    let _hook = receiver(root, port, 0).await;
    let dev = start_dev(binary(), &file).await;
    wait_for(
        "all fifteen accepted events after the clean restart",
        Duration::from_secs(60),
        || ids(root, "accepted").len() == 15,
    )
    .await;

    // The dead webhook's posts fail for the whole window: it is disabled,
    // and the good webhook is told.
    wait_for(
        "a webhook_disabled event for `dead`",
        Duration::from_secs(90),
        || {
            received(root)
                .iter()
                .any(|e| e["type"] == "webhook_disabled" && e["tags"]["webhook"] == "dead")
        },
    )
    .await;
    let listed = admin(&dev, token, &["--json", "webhook", "list", "dev"]).await;
    let hooks: Value = serde_json::from_str(&listed).expect("json");
    let state = |id: &str| {
        hooks
            .as_array()
            .expect("array")
            .iter()
            .find(|h| h["id"] == id)
            .cloned()
            .expect("listed")
    };
    assert_eq!(state("dead")["disabled"], true, "{listed}");
    assert!(
        state("dead")["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("posts failed for 40s")),
        "{listed}"
    );
    assert_eq!(state("good")["disabled"], false, "{listed}");
    assert_eq!(
        ids(root, "webhook_disabled").len(),
        1,
        "one notice for one disabled webhook"
    );
    delivery_logs(&dev, token).await;
}

/// One webhook's delivery log, newest first.
async fn delivery_log(
    query: &mut sluice_testkit::query::Client,
    id: &str,
) -> Vec<sluice_proto::v1::WebhookAttempt> {
    let request = ListWebhookDeliveriesRequest {
        tenant: "dev".into(),
        webhook_id: id.into(),
        limit: 1000,
    };
    let answer = query.list_webhook_deliveries(request).await;
    answer.expect("delivery log").into_inner().attempts
}

/// The delivery logs hold the refused posts (503, retried), the delivered
/// ones (200) and the dead webhook's last attempt (gave up).
async fn delivery_logs(dev: &Dev, token: &str) {
    let mut query = sluice_testkit::query::client(&dev.query, Some(token))
        .await
        .expect("query");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let good = delivery_log(&mut query, "good").await;
        let dead = delivery_log(&mut query, "dead").await;
        let count = |status: u32, outcome: &str| {
            good.iter()
                .filter(|a| a.status == status && a.outcome == outcome)
                .count()
        };
        let (refused, delivered) = (count(503, "retrying"), count(200, "delivered"));
        let gave_up = dead.iter().any(|a| a.outcome == "gave_up" && a.status == 0);
        // 15 accepted, 1 bounced and 1 notice delivered at least once each.
        if refused >= 3 && delivered >= 17 && gave_up {
            let times: Vec<i64> = good
                .iter()
                .map(|a| a.at.as_ref().map_or(0, |t| t.seconds))
                .collect();
            assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "delivery logs: {refused} refused, {delivered} delivered, gave up: {gave_up}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
