//! Delivery status notifications to SMTP submitters (issue #15 item 8) on
//! the real `sluice dev`: a tenant with `smtp_dsn` submits over SMTP with
//! Python's smtplib (STARTTLS, AUTH PLAIN) to three recipients of the ISP
//! simulator — one it takes, one that does not exist (550 5.1.1) and one
//! whose mailbox stays full until the message expires. The simulator then
//! receives, at the submitter's own address and from the null sender,
//! exactly two reports (RFC 3464): a bounce and an expiry, each naming its
//! recipient with the right status and quoting the submitted headers; the
//! delivered message gets none. The same failure submitted through the API,
//! or over SMTP from the null sender, gets none either.

use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_testkit::dev::{dev_config, send_request, start_dev};
use sluice_testkit::sender::start_sim;

const SCENARIO: &str = r#"
[[provider]]
name = "inbox"
listen = "127.0.0.2:0"
domains = ["inbox.test", "sluice.test"]
unknown_users = ["gone", "gone-api", "gone-null"]
mailbox_full = ["full"]
keep_bodies = true
"#;

const USER: &str = "app";
const PASSWORD: &str = "correct horse battery staple";
const SUBMITTER: &str = "app@sluice.test";

fn tenant(password_hash: &str) -> String {
    format!(
        r#"
[ingest.limits]
message_lifetime = "3s"
[[ingest.tenants]]
name = "dev"
api_keys = ["{key}"]
default_pool = "default"
domains = [{{ name = "sluice.test" }}]
smtp_users = [{{ username = "{USER}", password_hash = "{password_hash}" }}]
smtp_dsn = true
"#,
        key = sluice_node::secret::hash_secret("sluice-dev-key"),
    )
}

/// Submits one message from `from` to `to` over SMTP with smtplib; the
/// server's answer to the end of DATA.
const SUBMIT: &str = r#"
import smtplib, ssl, sys
host, port, user, password, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rcpts = sys.argv[6:]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, port, timeout=20)
s.ehlo("app.sluice.test")
s.starttls(context=ctx)
s.ehlo("app.sluice.test")
s.login(user, password)
msg = ("From: App <app@sluice.test>\r\nTo: " + ", ".join(rcpts) +
       "\r\nSubject: Order 1234 shipped\r\nMIME-Version: 1.0\r\n"
       "Content-Type: text/plain\r\n\r\nYour order is on its way.\r\n")
refused = s.sendmail(sender, rcpts, msg)
print("refused", refused)
s.quit()
"#;

async fn submit(smtp: &str, sender: &str, to: &[&str]) {
    let (host, port) = smtp.rsplit_once(':').expect("host:port");
    let out = tokio::process::Command::new("python3")
        .args(["-c", SUBMIT, host, port, USER, PASSWORD, sender])
        .args(to)
        .output()
        .await
        .expect("python3 runs (the test command installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("refused {}"),
        "SMTP submission failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_smtp_submissions_are_reported_to_the_submitter() {
    let sim = start_sim(SCENARIO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    let password = sluice_node::secret::hash_password(PASSWORD);
    let config = dev_config(dir.path(), &sim, "inbox", "inbox.test", &tenant(&password))
        .replace(
            "smtp_submission = \"\"",
            "smtp_submission = \"127.0.0.1:0\"",
        )
        .replace(
            "[sender.routes]\n",
            &format!(
                "[sender.routes]\n\"sluice.test\" = [\"{}\"]\n",
                sim.addr("inbox").expect("bound")
            ),
        );
    std::fs::write(&file, config).expect("write");
    let dev = start_dev(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &file).await;
    let smtp = smtp_address(&dev);

    submit(
        &smtp,
        SUBMITTER,
        &["ok@inbox.test", "gone@inbox.test", "full@inbox.test"],
    )
    .await;
    // The same failure from the null sender, and through the API: no report.
    submit(&smtp, "", &["gone-null@inbox.test"]).await;
    let mut ingest = IngestClient::connect(dev.ingest.clone())
        .await
        .expect("ingest");
    let request = send_request(SUBMITTER, &["gone-api@inbox.test".to_owned()], "api");
    ingest.send(request).await.expect("API send");

    let reports = wait_for_reports(&sim, 2).await;
    // Time for a third (wrong) report to show up before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = sim.shutdown().await;
    let to_submitter: Vec<_> = report
        .messages
        .iter()
        .filter(|m| m.recipients.iter().any(|r| r == SUBMITTER))
        .collect();
    assert_eq!(
        to_submitter.len(),
        2,
        "exactly the bounce and the expiry: {to_submitter:?}"
    );
    assert!(
        to_submitter.iter().all(|m| m.mail_from.is_empty()),
        "from the null sender"
    );
    assert_eq!(report.total_violations(), 0);
    assert!(
        report
            .messages
            .iter()
            .any(|m| m.recipients == ["ok@inbox.test"])
    );

    let (mut bounce, mut expiry) = (None, None);
    for raw in &reports {
        let status = delivery_status(raw);
        if status.contains("Final-Recipient: rfc822; gone@inbox.test") {
            bounce = Some(status);
        } else if status.contains("Final-Recipient: rfc822; full@inbox.test") {
            expiry = Some(status);
        } else {
            panic!("a report about neither failure: {status}");
        }
    }
    let bounce = bounce.expect("a report about the unknown user");
    assert!(
        bounce.contains("Action: failed") && bounce.contains("Status: 5.1.1"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Diagnostic-Code: smtp; 550 5.1.1"),
        "{bounce}"
    );
    let expiry = expiry.expect("a report about the full mailbox");
    assert!(
        expiry.contains("Action: failed") && expiry.contains("Status: 4.2.2"),
        "{expiry}"
    );
}

/// The SMTP submission listener `sluice dev` printed.
fn smtp_address(dev: &sluice_testkit::dev::Dev) -> String {
    assert!(
        !dev.smtp.is_empty(),
        "`sluice dev` printed no SMTP submission address"
    );
    dev.smtp.clone()
}

/// The bodies of the first `count` messages the simulator took for the
/// submitter.
async fn wait_for_reports(sim: &sluice_sim::SimHandle, count: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let bodies = sim.bodies_to(SUBMITTER);
        if bodies.len() >= count {
            return bodies;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} reports reached the submitter",
            bodies.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `message/delivery-status` part of a report, after checking that it
/// is a `multipart/report` quoting the submitted headers.
fn delivery_status(raw: &[u8]) -> String {
    let report = sluice_testkit::mime::delivery_report(raw);
    let headers = report.headers;
    assert!(headers.contains("Subject: Order 1234 shipped"), "{headers}");
    report.status
}
