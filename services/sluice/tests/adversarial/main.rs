//! The adversarial suite: the real `sluice dev` binary with two tenants,
//! attacked class by class as issue #13 lists them (credentials, work before
//! authentication, slow clients, connection and request floods, template
//! bombs, forged headers and times, SMTP guessing and idling, control
//! records and watchers, outbound TLS, secrets, exposure at start). Every
//! probe asserts the refusal, and — while a well-behaved client keeps
//! sending valid mail — that those valid sends kept completing within
//! [`harness::LATENCY_BOUND`] and that the process's resident memory grew
//! less than [`harness::RSS_GROWTH_BOUND`]. At the end every valid message
//! must have reached the simulated receiver, and nothing reached the site
//! whose certificate cannot be verified. (Fuzzing's corpus is replayed by
//! sluice-ingest's tests; docs/security.md lists every limit.)

mod api;
mod harness;
mod smtp;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use harness::{Target, Valid, probe};
use sluice_proto::v1::{EventKind, GetMessageRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_refused_within_bounds_while_valid_mail_flows() {
    let target = Target::start().await;
    secrets_stay_private(&target);
    let valid = Valid::start(&target).await;
    probe(&target, &valid, "credentials", api::credentials(&target)).await;
    let pre_auth = api::before_authentication(&target);
    probe(&target, &valid, "work before authentication", pre_auth).await;
    probe(&target, &valid, "slow clients", api::slow_clients(&target)).await;
    let flood = api::connection_flood(&target);
    probe(&target, &valid, "connection flood", flood).await;
    probe(&target, &valid, "request flood", api::shedding(&target)).await;
    probe(
        &target,
        &valid,
        "template bombs",
        api::template_bombs(&target),
    )
    .await;
    let forged = api::forged_headers_and_time(&target);
    probe(&target, &valid, "forged headers and times", forged).await;
    probe(
        &target,
        &valid,
        "control bounds",
        api::control_bounds(&target),
    )
    .await;
    probe(&target, &valid, "SMTP idle", smtp::idle_session(&target)).await;
    let guessing = smtp::command_guessing(&target);
    probe(&target, &valid, "SMTP command guessing", guessing).await;
    let passwords = smtp::password_guessing(&target);
    probe(&target, &valid, "SMTP password guessing", passwords).await;
    let strict = unverifiable_site_gets_nothing(&target);
    probe(&target, &valid, "outbound TLS", strict).await;
    let accepted = valid.stop();
    every_valid_message_arrives(&target, &accepted).await;
    the_metrics_saw_it(&target, accepted.len()).await;
    logs_are_json_without_secrets(&target);
}

/// `--log-format json`: every log line is one JSON object with a level and
/// a message, and no line holds the admin token or the SMTP password the
/// probes sent.
fn logs_are_json_without_secrets(target: &Target) {
    let lines = target.stderr.lock().expect("stderr").clone();
    assert!(!lines.is_empty(), "the run logged nothing at warn");
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{line}");
        assert!(parsed["fields"]["message"].is_string(), "{line}");
        assert!(
            !line.contains(&target.token),
            "the admin token in a log line"
        );
        assert!(
            !line.contains(harness::SMTP_PASSWORD),
            "a password in a log line"
        );
    }
}

/// One metrics endpoint lists every role's metrics, with help texts and
/// units, and counted what the run did.
async fn the_metrics_saw_it(target: &Target, accepted: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(&target.metrics)
        .await
        .expect("connect metrics");
    let request = format!(
        "GET /metrics HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
        target.metrics
    );
    conn.write_all(request.as_bytes()).await.expect("request");
    let mut text = String::new();
    conn.read_to_string(&mut text).await.expect("scrape");
    for family in [
        "sluice_ingest_submissions",
        "sluice_ingest_signing_seconds",
        "sluice_sender_outcomes",
        "sluice_sender_site_oldest_queued_seconds",
        "sluice_recorder_events_counted",
        "sluice_recorder_batch_write_seconds",
        "sluice_control_watchers",
        "sluice_ingest_tenant_recipients",
        "sluice_sender_consumer_lag_records",
        "sluice_sender_smtp_connections",
        "sluice_recorder_tenant_events",
        "sluice_recorder_consumer_lag_records",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no {family} in\n{text}"
        );
    }
    assert!(text.contains("# UNIT sluice_ingest_submission_seconds seconds"));
    assert_eq!(text.matches("# EOF").count(), 1, "one exposition");
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    let grpc_accepted =
        value("sluice_ingest_submissions_total{door=\"grpc\",outcome=\"accepted\"}");
    assert!(
        grpc_accepted >= accepted as f64,
        "{grpc_accepted} < {accepted}"
    );
    assert!(value("sluice_ingest_submissions_total{door=\"grpc\",outcome=\"invalid\"}") >= 2.0);
    assert!(value("sluice_ingest_requests_shed_total{door=\"http\"}") >= 1.0);
    assert!(
        value("sluice_control_watchers") >= 1.0,
        "ingest and the sender watch control"
    );
}

/// Secrets: the data directory is private, the generated token and key are
/// readable by their owner only, and the banner prints neither.
fn secrets_stay_private(target: &Target) {
    use std::os::unix::fs::PermissionsExt;
    let data = target.dir.path().join("data");
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&data), 0o700, "the data directory");
    for file in ["control.token", "unsubscribe.secret"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let secret = std::fs::read_to_string(data.join("unsubscribe.secret")).expect("secret");
    let banner = target.stdout.lock().expect("stdout").join("\n");
    assert!(
        !banner.contains(&target.token),
        "the banner prints the token"
    );
    assert!(!banner.contains(secret.trim()), "the banner prints the key");
}

/// A site that requires TLS whose certificate nobody trusts gets nothing:
/// the message is deferred (with the reason), never delivered.
async fn unverifiable_site_gets_nothing(target: &Target) {
    let mut client = sluice_proto::v1::ingest_client::IngestClient::connect(target.ingest.clone())
        .await
        .expect("connect ingest");
    let to = vec!["victim@strict.test".to_owned()];
    let request = sluice_testkit::dev::send_request("a@sluice.test", &to, "strict");
    let sent = client.send(request).await.expect("accepted").into_inner();
    let id = sent.recipients[0].message_id.clone();
    let mut query = sluice_testkit::query::client(&target.query, Some(&target.token))
        .await
        .expect("connect query");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let get = GetMessageRequest {
            message_id: id.clone(),
        };
        if let Ok(status) = query.get_message(get).await {
            let status = status.into_inner();
            assert_ne!(status.state(), EventKind::Delivered, "{status:?}");
            if status.state() == EventKind::Deferred {
                break;
            }
        }
        assert!(Instant::now() < deadline, "{id} was never deferred");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every message the valid client got an id for reached the receiver, and
/// nothing reached the unverifiable site.
async fn every_valid_message_arrives(target: &Target, accepted: &[String]) {
    assert!(
        accepted.len() > 50,
        "only {} valid sends in the run",
        accepted.len()
    );
    let expected = accepted.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = target.sim.snapshot();
        let arrived: HashSet<String> = report
            .messages
            .iter()
            .flat_map(|m| m.recipients.iter().cloned())
            .filter(|r| r.starts_with("valid-"))
            .collect();
        let strict = report
            .messages
            .iter()
            .flat_map(|m| &m.recipients)
            .any(|r| r.ends_with("@strict.test"));
        assert!(!strict, "mail reached the site whose certificate failed");
        if arrived.len() >= expected {
            println!(
                "{expected} valid messages accepted, {} arrived",
                arrived.len()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {expected} valid messages arrived within 60 s",
            arrived.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Exposure at start: an ingest listener on every address is refused
/// before anything serves while a tenant keeps the well-known dev key, and
/// without TLS once it does not; each refusal says what to configure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_listener_is_refused_at_start() {
    let sim = sluice_testkit::sender::start_sim(harness::SCENARIO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let exposed = harness::config(dir.path(), &sim, "")
        .replace("grpc = \"127.0.0.1:0\"", "grpc = \"0.0.0.0:0\"");
    let own_key = sluice_node::secret::hash_secret("a key of our own");
    let dev_line = exposed
        .lines()
        .find(|l| l.starts_with("api_keys"))
        .expect("the dev tenant's keys")
        .to_owned();
    let without_dev_key = exposed.replace(&dev_line, &format!("api_keys = [\"{own_key}\"]"));
    for (config, says) in [
        (exposed, "sluice-dev-key"),
        (without_dev_key, "tls.cert_file"),
    ] {
        let file = dir.path().join("dev.toml");
        std::fs::write(&file, config).expect("write config");
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["dev", "--config"])
            .arg(&file)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), output)
            .await
            .expect("refused within 60 s")
            .expect("run sluice dev");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "it started: {stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}
