//! A tenant manages its own suppression list through ingest, over HTTP
//! and gRPC, on the real `sluice dev`: entries added one by one or in bulk
//! (JSON and CSV) are what the next submission is checked against, removed
//! ones are sent to again, a bad entry changes nothing, and one tenant
//! never sees or changes another's list.

use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::tenant_suppressions_client::TenantSuppressionsClient;
use sluice_proto::v1::{
    AddSuppressionsRequest, ListTenantSuppressionsRequest, RemoveSuppressionsRequest, Tenant,
    TenantSuppression,
};
use sluice_testkit::dev::{dev_config, send_request, start_dev};
use sluice_testkit::http::{body, request, status};
use sluice_testkit::sender::{INBOX, start_sim};
use sluice_testkit::with_key;

const DEV_KEY: &str = "sluice-dev-key";
const OTHER_KEY: &str = "other-tenant-key-0123456789";

/// A call to ingest's HTTP API with `key`; (status, body).
async fn api(
    http: &str,
    key: &str,
    method: &str,
    path: &str,
    kind: &str,
    body_: &str,
) -> (u16, String) {
    let auth = format!("authorization: Bearer {key}");
    let kind = format!("content-type: {kind}");
    let answer = request(http, method, path, &[&auth, &kind], body_.as_bytes()).await;
    (status(&answer), body(&answer).to_owned())
}

async fn get(http: &str, key: &str, path: &str) -> (u16, String) {
    api(http, key, "GET", path, "application/json", "").await
}

async fn post_json(http: &str, key: &str, path: &str, json: &serde_json::Value) -> (u16, String) {
    api(
        http,
        key,
        "POST",
        path,
        "application/json",
        &json.to_string(),
    )
    .await
}

/// Every address on `key`'s list, paging `page_size` at a time.
async fn listed(http: &str, key: &str, page_size: u32) -> Vec<(String, String)> {
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let path = format!("/v1/suppressions?page_size={page_size}&page_token={token}");
        let (code, text) = get(http, key, &path).await;
        assert_eq!(code, 200, "{text}");
        let page: serde_json::Value = serde_json::from_str(&text).expect("json");
        for s in page["suppressions"].as_array().expect("array") {
            assert!(
                s["created_at"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{s}"
            );
            out.push((
                s["address"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            ));
        }
        token = page["next_page_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            return out;
        }
    }
}

/// Which of `to` ingest answers `suppressed` for, submitting as tenant dev.
async fn suppressed(ingest: &str, to: &[&str]) -> Vec<bool> {
    let mut client = IngestClient::connect(ingest.to_owned())
        .await
        .expect("connect ingest");
    let to: Vec<String> = to.iter().map(|a| (*a).to_owned()).collect();
    let answer = client
        .send(send_request("api@sluice.test", &to, "suppression api"))
        .await
        .expect("send")
        .into_inner();
    answer.recipients.iter().map(|r| r.suppressed).collect()
}

/// Puts tenant `other` into dev's control and waits until ingest takes its
/// key.
async fn add_other_tenant(dev: &sluice_testkit::dev::Dev, token: &str) {
    let mut control =
        sluice_control_client::client(&format!("http://{}", dev.control), Some(token))
            .await
            .expect("connect control");
    let tenant = Tenant {
        name: "other".into(),
        sending_domains: vec!["other.test".into()],
        default_pool: "default".into(),
        api_key_hashes: vec![sluice_node::secret::hash_secret(OTHER_KEY)],
        ..Tenant::default()
    };
    control.put_tenant(tenant).await.expect("put tenant");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&dev.http, OTHER_KEY, "/v1/suppressions").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "ingest never took tenant other's key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_manages_its_own_suppression_list() {
    let sim = start_sim(INBOX).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    std::fs::write(
        &file,
        dev_config(dir.path(), &sim, "inbox", "inbox.test", ""),
    )
    .expect("config");
    let dev = start_dev(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &file).await;
    let token = std::fs::read_to_string(dir.path().join("data/control.token")).expect("token");
    let http = dev.http.clone();

    // Credentials come first: no key, or a wrong one, reads nothing.
    for key in ["", "not-a-key"] {
        let (code, text) = get(&http, key, "/v1/suppressions").await;
        assert_eq!(code, 401, "{text}");
    }

    // One bad entry refuses the whole request, naming it.
    let entries = serde_json::json!({"suppressions": [
        {"address": "a@inbox.test"},
        {"address": "B@Inbox.test", "reason": "complaint"},
        {"address": "not-an-address"},
    ]});
    let (code, text) = post_json(&http, DEV_KEY, "/v1/suppressions", &entries).await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("suppressions[2].address"), "{text}");
    assert!(
        listed(&http, DEV_KEY, 100).await.is_empty(),
        "a refused import wrote something"
    );

    let entries = serde_json::json!({"suppressions": [
        {"address": "a@inbox.test"},
        {"address": "B@Inbox.test", "reason": "complaint"},
    ]});
    let (code, text) = post_json(&http, DEV_KEY, "/v1/suppressions", &entries).await;
    assert_eq!((code, text.as_str()), (200, r#"{"added":2}"#));

    // A CSV export from elsewhere: columns found by name, extra ones ignored.
    let csv = "Email,Reason,Created\nc@inbox.test,unsubscribe,2024-01-01\nd@inbox.test,,x\n";
    let (code, text) = api(&http, DEV_KEY, "POST", "/v1/suppressions", "text/csv", csv).await;
    assert_eq!((code, text.as_str()), (200, r#"{"added":2}"#));
    let bad_csv = "e@inbox.test\nf@inbox.test,bounced\n";
    let (code, text) = api(
        &http,
        DEV_KEY,
        "POST",
        "/v1/suppressions",
        "text/csv",
        bad_csv,
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("line 2.reason"), "{text}");

    let want = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, r)| ((*a).to_owned(), (*r).to_owned()))
            .collect()
    };
    let four = want(&[
        ("a@inbox.test", "manual"),
        ("b@inbox.test", "complaint"),
        ("c@inbox.test", "unsubscribe"),
        ("d@inbox.test", "manual"),
    ]);
    assert_eq!(
        listed(&http, DEV_KEY, 3).await,
        four,
        "two pages of 3 and 1"
    );
    let flags = suppressed(&dev.ingest, &["B@inbox.test", "friend@inbox.test"]).await;
    assert_eq!(
        flags,
        [true, false],
        "the next submission is checked against the list"
    );

    // Tenant other sees none of dev's list and cannot take from it.
    add_other_tenant(&dev, token.trim()).await;
    assert!(listed(&http, OTHER_KEY, 100).await.is_empty());
    let (code, text) = api(
        &http,
        OTHER_KEY,
        "DELETE",
        "/v1/suppressions/a@inbox.test",
        "application/json",
        "",
    )
    .await;
    assert_eq!((code, text.as_str()), (200, r#"{"removed":false}"#));
    assert_eq!(listed(&http, DEV_KEY, 100).await, four);

    // The same list over gRPC.
    let mut grpc = TenantSuppressionsClient::connect(dev.ingest.clone())
        .await
        .expect("connect");
    let unauthenticated = grpc
        .list_suppressions(ListTenantSuppressionsRequest::default())
        .await
        .expect_err("no key");
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    let bad = AddSuppressionsRequest {
        suppressions: vec![TenantSuppression {
            address: "g@inbox.test".into(),
            reason: "bounced".into(),
            created_at: None,
        }],
    };
    let refused = grpc
        .add_suppressions(with_key(bad, DEV_KEY))
        .await
        .expect_err("bad reason");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("suppressions[0].reason"),
        "{refused:?}"
    );
    let remove = RemoveSuppressionsRequest {
        addresses: vec!["B@INBOX.test".into(), "nobody@inbox.test".into()],
    };
    let removed = grpc
        .remove_suppressions(with_key(remove, DEV_KEY))
        .await
        .expect("remove");
    assert_eq!(removed.into_inner().removed, 1);
    let page = grpc
        .list_suppressions(with_key(ListTenantSuppressionsRequest::default(), DEV_KEY))
        .await
        .expect("list")
        .into_inner();
    let addresses: Vec<&str> = page
        .suppressions
        .iter()
        .map(|s| s.address.as_str())
        .collect();
    assert_eq!(addresses, ["a@inbox.test", "c@inbox.test", "d@inbox.test"]);

    let (code, text) = api(
        &http,
        DEV_KEY,
        "DELETE",
        "/v1/suppressions/a@inbox.test",
        "application/json",
        "",
    )
    .await;
    assert_eq!((code, text.as_str()), (200, r#"{"removed":true}"#));
    let flags = suppressed(
        &dev.ingest,
        &["a@inbox.test", "b@inbox.test", "c@inbox.test"],
    )
    .await;
    assert_eq!(
        flags,
        [false, false, true],
        "removed addresses are sent to again"
    );

    bulk_import_is_bounded(&http).await;
    let mut child = dev.child;
    child.start_kill().expect("stop");
    child.wait().await.expect("reaped");
}

/// 5,000 entries in one CSV land whole; 10,001 in one request are refused.
async fn bulk_import_is_bounded(http: &str) {
    let csv: String = (0..5_000)
        .map(|i| format!("bulk{i:05}@inbox.test\n"))
        .collect();
    let (code, text) = api(http, DEV_KEY, "POST", "/v1/suppressions", "text/csv", &csv).await;
    assert_eq!((code, text.as_str()), (200, r#"{"added":5000}"#));
    let all = listed(http, DEV_KEY, 1_000).await;
    assert_eq!(
        all.iter().filter(|(a, _)| a.starts_with("bulk")).count(),
        5_000
    );
    let too_many: Vec<serde_json::Value> = (0..10_001)
        .map(|i| serde_json::json!({"address": format!("many{i}@inbox.test")}))
        .collect();
    let json = serde_json::json!({ "suppressions": too_many });
    let (code, text) = post_json(http, DEV_KEY, "/v1/suppressions", &json).await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("at most 10000"), "{text}");
    assert_eq!(
        listed(http, DEV_KEY, 1_000).await,
        all,
        "the refused import wrote nothing"
    );
}
