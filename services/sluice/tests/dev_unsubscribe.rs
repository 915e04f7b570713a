//! One-click unsubscribe (RFC 8058) on the real `sluice dev`: the link
//! ingest signs into a message's `List-Unsubscribe` header is posted to the
//! HTTP listener as a mailbox provider would; the recorder suppresses the
//! recipient for the tenant and the next submission to it is answered
//! `suppressed`, well within the minute, and the tenant's webhook gets the
//! `unsubscribed` event, signed. Forged and altered links are
//! refused with a clear page and change nothing; `GET` shows a form that
//! works without JavaScript and changes nothing by itself. Both the inbound
//! role's link listener and ingest's HTTP listener answer the links. The
//! header's `mailto:` alternative (RFC 2369), mailed to dev's inbound MX,
//! does the same; a forged one is refused at RCPT.

use std::time::Duration;

use sluice_ingest::compliance::{Unsubscribe, UnsubscribeTarget};
use sluice_proto::v1::ingest_client::IngestClient;
use sluice_testkit::dev::{
    dev_config, send_request, start_dev, suppressions, wait_for_suppressions,
};
use sluice_testkit::mx::Client;
use sluice_testkit::sender::{INBOX, start_sim};
use sluice_testkit::webhooks::{received, receiver, register};

const ANN: &str = "ann@inbox.test";

/// The limit Gmail and Yahoo set is two days; Sluice's aim is well within
/// a minute.
const MINUTE: Duration = Duration::from_secs(60);

/// A form post (or a GET) to ingest's HTTP listener; the whole answer.
async fn http(addr: &str, method: &str, path: &str, body: &str) -> String {
    let form = ["content-type: application/x-www-form-urlencoded"];
    sluice_testkit::http::request(addr, method, path, &form, body.as_bytes()).await
}

/// The one-click `POST` a mailbox provider sends, answered `200`.
async fn one_click(listener: &str, path: &str) -> String {
    let answer = http(listener, "POST", path, "List-Unsubscribe=One-Click").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

/// A running `sluice dev` delivering to the simulator, its data directory,
/// and clients of its ingest and control.
struct Running {
    sim: sluice_sim::SimHandle,
    dir: tempfile::TempDir,
    dev: sluice_testkit::dev::Dev,
    client: IngestClient<tonic::transport::Channel>,
    control: sluice_control_client::Client,
}

async fn start() -> Running {
    start_with(INBOX).await
}

async fn start_with(scenario: &str) -> Running {
    let sim = start_sim(scenario).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    let config = dev_config(dir.path(), &sim, "inbox", "inbox.test", "");
    std::fs::write(&file, config).expect("write config");
    let dev = start_dev(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &file).await;
    let client = IngestClient::connect(dev.ingest.clone())
        .await
        .expect("connect ingest");
    let token = std::fs::read_to_string(dir.path().join("data/control.token"))
        .expect("dev's control.token");
    let control =
        sluice_control_client::client(&format!("http://{}", dev.control), Some(token.trim()))
            .await
            .expect("connect control");
    Running {
        sim,
        dir,
        dev,
        client,
        control,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_click_unsubscribe_suppresses_the_next_submission() {
    let Running {
        dir,
        dev,
        mut client,
        mut control,
        ..
    } = start().await;
    // The tenant's webhook (the example receiver, checking signatures).
    let port = sluice_testkit::cluster::free_addr().port();
    let _hook = receiver(dir.path(), port, 0).await;
    register(&dev.http, "unsubscribes", port, &["unsubscribed"]).await;
    let request = send_request("news@sluice.test", &[ANN.to_owned()], "spring news");
    let sent = client.send(request).await.expect("send").into_inner();
    let message_id = sent.recipients[0].message_id.clone();
    assert!(!sent.recipients[0].suppressed);

    // The link in the message: signed with the secret dev keeps in its data
    // directory, under the default base URL's path.
    let secret = std::fs::read_to_string(dir.path().join("data/unsubscribe.secret"))
        .expect("dev's unsubscribe.secret");
    let signer = Unsubscribe::new("http://unsubscribe.test/unsubscribe", secret.trim());
    let target = UnsubscribeTarget {
        tenant: "dev".into(),
        recipient: ANN.into(),
        message_id: message_id.clone(),
        list: String::new(),
    };
    let url = signer.url(&target);
    let path = url.strip_prefix("http://unsubscribe.test").expect("path");
    let (payload, tag) = path.rsplit_once('.').expect("token");

    // Forged: another recipient under the original tag; and a token signed
    // with another secret.
    let bob = UnsubscribeTarget {
        recipient: "bob@inbox.test".into(),
        ..target.clone()
    };
    let bob_url = signer.url(&bob);
    let (bob_payload, _) = bob_url.rsplit_once('.').expect("token");
    let bob_path = bob_payload
        .strip_prefix("http://unsubscribe.test")
        .expect("path");
    let stranger = Unsubscribe::new("http://x/unsubscribe", "another-secret-another-secret-123");
    let stranger_url = stranger.url(&target);
    let stranger_path = stranger_url.strip_prefix("http://x").expect("path");
    for forged in [
        format!("{bob_path}.{tag}"),
        stranger_path.to_owned(),
        format!("{payload}.AAAA"),
    ] {
        for listener in [&dev.inbound_http, &dev.http] {
            let answer = http(listener, "POST", &forged, "List-Unsubscribe=One-Click").await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
            assert!(answer.contains("Nothing was changed"), "{answer}");
        }
    }
    // A person following the link sees a form, on the inbound role's link
    // listener as on ingest's; nothing happens yet.
    for listener in [&dev.inbound_http, &dev.http] {
        let page = http(listener, "GET", path, "").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("<form method=\"post\">"), "{page}");
        assert!(page.contains(ANN), "{page}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        suppressions(&mut control).await,
        [],
        "forged links and GET change nothing"
    );

    // The mailbox provider's one click, at the inbound role.
    let answer = one_click(&dev.inbound_http, path).await;
    assert!(answer.contains("is unsubscribed"), "{answer}");
    let expected = [(ANN.to_owned(), "unsubscribe".to_owned())];
    let took = wait_for_suppressions(&mut control, &[(ANN, "unsubscribe")], MINUTE).await;
    eprintln!("unsubscribe effective after {took:?}");
    let request = send_request("news@sluice.test", &[ANN.to_owned()], "more news");
    let again = client.send(request).await.expect("send").into_inner();
    assert!(again.recipients[0].suppressed, "{again:?}");

    // A second click of the same link is answered the same and changes
    // nothing more (the recorder de-duplicates the event).
    let answer = http(&dev.http, "POST", path, "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(suppressions(&mut control).await, expected);

    // Both clicks reached the webhook, signed, each as its own event of
    // the message.
    let deadline = std::time::Instant::now() + MINUTE;
    loop {
        let posted = received(dir.path());
        let ours = posted
            .iter()
            .filter(|e| e["type"] == "unsubscribed" && e["message_id"] == message_id.as_str())
            .count();
        if ours == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "posted: {posted:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailto_unsubscribe_at_the_mx_suppresses_the_next_submission() {
    let Running {
        dir,
        dev,
        mut client,
        mut control,
        ..
    } = start().await;
    let request = send_request("news@sluice.test", &[ANN.to_owned()], "spring news");
    let sent = client.send(request).await.expect("send").into_inner();
    let message_id = sent.recipients[0].message_id.clone();

    // The header's mailto: address, as ingest signed it (the bounce domain
    // is the From domain here).
    let secret = std::fs::read_to_string(dir.path().join("data/unsubscribe.secret"))
        .expect("dev's unsubscribe.secret");
    let verp = sluice_node::verp::Verp::new(secret.trim());
    let address = verp.unsubscribe_address(&message_id, "sluice.test");
    let forged = format!("{}0@sluice.test", address.split('@').next().unwrap());

    let mut mx = Client::connect(&dev.inbound).await;
    assert!(mx.say("EHLO mail.inbox.test").await.starts_with("250"));
    let refused = mx.envelope(&forged).await;
    assert!(refused.starts_with("550 5.1.1"), "{refused}");
    assert!(mx.say("RSET").await.starts_with("250"));
    assert!(mx.envelope(&address).await.starts_with("250"));
    let message =
        format!("From: {ANN}\r\nTo: {address}\r\nSubject: unsubscribe\r\n\r\nunsubscribe");
    let answer = mx.data(&message).await;
    assert!(
        answer.starts_with("250") && answer.contains("1 unsubscribes"),
        "{answer}"
    );

    let took = wait_for_suppressions(&mut control, &[(ANN, "unsubscribe")], MINUTE).await;
    eprintln!("unsubscribe effective after {took:?}");
    let request = send_request("news@sluice.test", &[ANN.to_owned()], "more news");
    let again = client.send(request).await.expect("send").into_inner();
    assert!(again.recipients[0].suppressed, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_from_a_list_stops_that_list_only() {
    let scenario = format!("{INBOX}keep_bodies = true\n");
    // The data directory must outlive the test: kept in `_dir`.
    let Running {
        sim,
        dir: _dir,
        dev,
        mut client,
        mut control,
    } = start_with(&scenario).await;
    let listed = |list: &str, subject: &str| {
        let mut request = send_request("news@sluice.test", &[ANN.to_owned()], subject);
        request.get_mut().list = list.into();
        request
    };
    let bad = client
        .send(listed("two words", "x"))
        .await
        .expect_err("bad list");
    assert!(bad.message().contains("list"), "{bad:?}");
    client
        .send(listed("weekly", "weekly news"))
        .await
        .expect("send");

    // The one-click link exactly as the message carries it.
    let deadline = std::time::Instant::now() + MINUTE;
    let body = loop {
        if let Some(body) = sim.bodies_to(ANN).pop() {
            break String::from_utf8_lossy(&body).into_owned();
        }
        assert!(std::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let header = body
        .split("List-Unsubscribe: <")
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .unwrap_or_else(|| panic!("no List-Unsubscribe link: {body}"))
        .replace("\r\n ", "");
    let path = header
        .strip_prefix("http://127.0.0.1:7081")
        .expect("dev's unsubscribe base URL");
    let answer = one_click(&dev.inbound_http, path).await;
    assert!(answer.contains("the list weekly of dev"), "{answer}");
    let scoped = "list:weekly ann@inbox.test";
    wait_for_suppressions(&mut control, &[(scoped, "unsubscribe")], MINUTE).await;

    // The list stops; other lists and mail without a list go on.
    for (list, stopped) in [
        ("weekly", true),
        ("Weekly", true),
        ("offers", false),
        ("", false),
    ] {
        let sent = client.send(listed(list, "more")).await.expect("send");
        let recipient = &sent.get_ref().recipients[0];
        assert_eq!(
            recipient.suppressed, stopped,
            "list {list:?}: {recipient:?}"
        );
    }
    assert_eq!(
        suppressions(&mut control).await,
        [(scoped.to_owned(), "unsubscribe".to_owned())]
    );
}
