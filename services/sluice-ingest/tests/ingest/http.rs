//! HTTP JSON front door with hyper's client.

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::common::{self, ACME_KEY, GLOBEX_KEY, Options, header};

type Body = Full<axum::body::Bytes>;

pub async fn call(
    node: &common::Node,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", node.http))
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let request = request.body(Full::from(bytes)).expect("request");
    let response = client.request(request).await.expect("HTTP call");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({ "text": String::from_utf8_lossy(&bytes) }));
    (status, value)
}

/// A whole second one day from now: when the test message is scheduled.
pub fn tomorrow() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(now).expect("seconds fit") + 86_400
}

fn rfc3339(seconds: i64) -> String {
    prost_types::Timestamp { seconds, nanos: 0 }.to_string()
}

pub fn message() -> Value {
    json!({
        "from": "Acme <news@acme.example>",
        "recipients": [
            { "address": "ann@example.org", "name": "Ann", "substitutions": { "first": "Ann" } },
            { "address": "bob@example.org", "substitutions": { "first": "Bob" } }
        ],
        "template": { "subject": "Hi {{ first }}", "text": "Hello {{ first }}" },
        "campaign": "summer",
        "tags": { "k": "v" },
        "send_at": rfc3339(tomorrow()),
        "priority": "bulk"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_send_and_batch_publish_durably_and_openapi_lists_every_route() {
    let node = common::start(Options::default()).await;
    let (status, body) = call(
        &node,
        "POST",
        "/v1/messages",
        Some(ACME_KEY),
        Some(message()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = body["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .map(|r| r["message_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    let raw = json!({
        "recipients": [{ "address": "carl@example.org" }],
        "raw": "From: news@acme.example\nSubject: raw\n\nline one\n",
        "idempotency_key": "http-1"
    });
    let batch = json!({ "messages": [raw] });
    let (status, body) = call(
        &node,
        "POST",
        "/v1/messages/batch",
        Some(ACME_KEY),
        Some(batch),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let raw_id = body["responses"][0]["recipients"][0]["message_id"]
        .as_str()
        .expect("id")
        .to_owned();

    let envelopes = node.envelopes("shared", 3).await;
    assert_eq!(envelopes[0].message_id, ids[0]);
    assert_eq!(envelopes[1].message_id, ids[1]);
    assert_eq!(envelopes[2].message_id, raw_id);
    assert_eq!(envelopes[0].campaign, "summer");
    assert_eq!(envelopes[0].priority, 1);
    let scheduled = envelopes[0].not_before.expect("not_before").seconds;
    assert!(
        (tomorrow() - scheduled).abs() < 120,
        "not_before {scheduled} is the send_at of a day ahead"
    );
    assert_eq!(
        header(&envelopes[0].content, "Subject").as_deref(),
        Some("Hi Ann")
    );
    let crlf_body = b"\r\n\r\nline one\r\n";
    assert!(
        envelopes[2]
            .content
            .windows(crlf_body.len())
            .any(|w| w == crlf_body),
        "bare LF normalized to CRLF"
    );

    let (status, doc) = call(&node, "GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    for (method, path) in sluice_ingest::http::ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} not documented"
        );
    }
    // Tenants from the node's own file: no suppression list to manage, and
    // the answer says which setting would give one.
    let (status, body) = call(&node, "GET", "/v1/suppressions", Some(ACME_KEY), None).await;
    assert_eq!(status, 501, "{body}");
    assert!(body.to_string().contains("control.addr"), "{body}");
    // Probes need no key; the message log answers, so the node is ready.
    let (status, body) = call(&node, "GET", "/healthz", None, None).await;
    assert_eq!((status, body["text"].as_str()), (200, Some("ok\n")));
    let (status, body) = call(&node, "GET", "/readyz", None, None).await;
    assert_eq!((status, body["text"].as_str()), (200, Some("ready\n")));
    node.stop().await;
}

/// A request without a valid key is answered 401 from its head alone: the
/// test announces a 40 MB body, sends none of it, and still gets the answer
/// (a server reading the body first would wait for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_before_the_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = common::start(Options::default()).await;
    let paths = ["/v1/messages", "/v1/suppressions"];
    for (auth, path) in ["", "Authorization: Bearer wrong-key\r\n"]
        .into_iter()
        .flat_map(|auth| paths.map(|path| (auth, path)))
    {
        let mut conn = tokio::net::TcpStream::connect(node.http)
            .await
            .expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}content-type: application/json\r\n\
             content-length: 40000000\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.expect("write head");
        let mut answer = vec![0u8; 512];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut answer))
            .await
            .expect("answered without the body")
            .expect("read");
        let text = String::from_utf8_lossy(&answer[..read]);
        assert!(text.starts_with("HTTP/1.1 401"), "{path} {auth:?}: {text}");
    }
    node.stop().await;
}

/// Templates that would render without bound are refused: one that grows
/// a string at submission (naming the operator), one that loops a billion
/// times on the engine's fuel, both quickly and without publishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_cannot_render_without_bound() {
    let node = common::start(Options::default()).await;
    let mut grow = message();
    grow["template"]["text"] = json!("{{ 'x' * 1000000000 }}");
    let loops = "{% for a in first %}{% for b in first %}{% for c in first %}xxxxxxxx\
                 {% endfor %}{% endfor %}{% endfor %}";
    let mut spin = message();
    spin["template"]["text"] = json!(loops);
    spin["recipients"][0]["substitutions"]["first"] = json!("a".repeat(1_000));
    for (body, field, says) in [
        (grow, "template.text", "`*` operator"),
        (spin, "recipients[0].substitutions", "steps"),
    ] {
        let started = std::time::Instant::now();
        let (status, answer) =
            call(&node, "POST", "/v1/messages", Some(ACME_KEY), Some(body)).await;
        let text = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{answer}");
        assert!(text.contains(field) && text.contains(says), "{text}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
    node.stop().await;
}

/// Posts one raw message from the acme tenant; returns status and error text.
async fn post_raw(node: &common::Node, raw: &str) -> (u16, String) {
    let message = json!({ "recipients": [{ "address": "carl@example.org" }], "raw": raw });
    let (status, body) = call(node, "POST", "/v1/messages", Some(ACME_KEY), Some(message)).await;
    let text = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, text)
}

/// A tenant cannot pass a domain it does not own as the author: the From
/// value is parsed as receivers parse it (comments and display names are
/// not the address, several mailboxes are refused), a Sender header must be
/// the tenant's too, and receiver-written headers are refused. Each refusal
/// names the field; none publishes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_authors_and_receiver_headers_are_refused() {
    let node = common::start(Options::default()).await;
    for (raw, status, says) in [
        (
            "From: ceo@evil.example (news@acme.example)\r\n\r\nx",
            403,
            "evil.example",
        ),
        (
            "From: \"news@acme.example\" <ceo@evil.example>\r\n\r\nx",
            403,
            "evil.example",
        ),
        (
            "From: news@acme.example, ceo@evil.example\r\n\r\nx",
            400,
            "2 mailboxes",
        ),
        (
            "From: news@acme.example\r\nSender: ceo@evil.example\r\n\r\nx",
            403,
            "Sender header",
        ),
        (
            "From: news@acme.example\r\nAuthentication-Results: mx; dmarc=pass\r\n\r\nx",
            400,
            "Authentication-Results",
        ),
    ] {
        let (got, text) = post_raw(&node, raw).await;
        assert_eq!(got, status, "{raw:?}: {text}");
        assert!(text.contains(says), "{raw:?}: {text}");
        assert!(text.contains("raw"), "names the field: {text}");
    }
    let (got, text) = post_raw(&node, "From: \"Acme, Inc\" <news@acme.example>\r\n\r\nx").await;
    assert_eq!(got, 200, "{text}");
    // The refused ones came first on this one-partition topic: the first
    // record being the genuine message shows none of them was published.
    let published = node.envelopes("shared", 1).await;
    let from = header(&published[0].content, "From").unwrap_or_default();
    assert!(from.contains("Acme, Inc"), "{from}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_have_the_right_status_and_name_the_field() {
    let node = common::start(Options::default()).await;
    let (status, body) = call(&node, "POST", "/v1/messages", None, Some(message())).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = call(&node, "POST", "/v1/messages", Some("nope"), Some(message())).await;
    assert_eq!(status, 401);

    let mut typo = message();
    typo["frm"] = json!("x");
    let (status, body) = call(&node, "POST", "/v1/messages", Some(ACME_KEY), Some(typo)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("frm"),
        "{body}"
    );

    let mut bad = message();
    bad["recipients"][1]["address"] = json!("bob@@example.org");
    let (status, body) = call(&node, "POST", "/v1/messages", Some(ACME_KEY), Some(bad)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("recipients[1].address"),
        "{body}"
    );

    let mut injected = message();
    injected["headers"] = json!({ "X-A": "1\r\nBcc: eve@evil.example" });
    let (status, body) = call(
        &node,
        "POST",
        "/v1/messages",
        Some(ACME_KEY),
        Some(injected),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("header injection"),
        "{body}"
    );

    let (status, body) = call(
        &node,
        "POST",
        "/v1/messages",
        Some(GLOBEX_KEY),
        Some(message()),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    let mut big = message();
    big["template"]["text"] = json!("x".repeat(300 * 1024));
    let (status, body) = call(&node, "POST", "/v1/messages", Some(ACME_KEY), Some(big)).await;
    assert_eq!(status, 413, "{body}");

    let mut pool = message();
    pool["pool"] = json!("nope");
    let (status, body) = call(&node, "POST", "/v1/messages", Some(ACME_KEY), Some(pool)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("pool"),
        "{body}"
    );
    node.stop().await;

    let down = common::start(Options {
        brokers: Some("127.0.0.1:1".into()),
        publish_timeout_ms: 1500,
        ..Options::default()
    })
    .await;
    let (status, body) = call(
        &down,
        "POST",
        "/v1/messages",
        Some(ACME_KEY),
        Some(message()),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["durable_message_ids"], json!([]), "{body}");
    down.stop().await;
}
