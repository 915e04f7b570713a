//! Asynchronous bounces on the real `sluice dev` (issue #15 item 2): a
//! message is delivered to the ISP simulator, then "its server" (this test)
//! mails a delivery status notification to the message's VERP return path
//! at dev's inbound MX. The recorder records a `bounced` event with the
//! tenant taken from the message's history, suppresses the recipient, and
//! the next submission to it is answered `suppressed`. Forged VERP
//! addresses are refused at RCPT, an automatic reply and a malformed report
//! change nothing. A feedback loop's complaint (ARF) about another message
//! suppresses that message's recipient (not the address the report claims)
//! for the tenant.

use std::time::{Duration, Instant};

use sluice_proto::v1::ingest_client::IngestClient;
use sluice_proto::v1::{EventKind, GetMessageRequest};
use sluice_testkit::dev::{
    dev_config, send_request, start_dev, suppressions, wait_for_suppressions,
};
use sluice_testkit::mx::Client;
use sluice_testkit::sender::{INBOX, start_sim};

const BOB: &str = "bob@inbox.test";
const CAROL: &str = "carol@inbox.test";
const FBL: &str = "fbl@sluice.test";

fn report(to: &str, recipient: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.inbox.test\r\nTo: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"R\"\r\n\r\n\
         --R\r\nContent-Type: text/plain\r\n\r\nThe mailbox is gone.\r\n\
         --R\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.inbox.test\r\n\r\n\
         Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: mailbox disabled after delivery\r\n\r\n\
         --R--\r\n"
    )
}

/// An ARF report whose original carries `return_path`; it claims
/// `claimed` as the recipient.
fn complaint(return_path: &str, claimed: &str) -> String {
    format!(
        "From: fbl@hotmail.test\r\nTo: {FBL}\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n\
         --F\r\nContent-Type: text/plain\r\n\r\nThis is a spam report.\r\n\
         --F\r\nContent-Type: message/feedback-report\r\n\r\n\
         Feedback-Type: abuse\r\nUser-Agent: TestFBL/1.0\r\nVersion: 1\r\nOriginal-Rcpt-To: {claimed}\r\n\r\n\
         --F\r\nContent-Type: text/rfc822-headers\r\n\r\n\
         Return-Path: <{return_path}>\r\nSubject: spring news\r\n\r\n--F--\r\n"
    )
}

/// Sends a message to `to` and waits for the simulator to take it; its id
/// and the return path it went with.
async fn delivered(
    ingest: &mut IngestClient<tonic::transport::Channel>,
    sim: &sluice_sim::SimHandle,
    to: &str,
) -> (String, String) {
    let request = send_request("news@sluice.test", &[to.to_owned()], "spring news");
    let sent = ingest.send(request).await.expect("send").into_inner();
    let id = sent.recipients[0].message_id.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = sim.snapshot().messages;
        if let Some(m) = seen.iter().find(|m| m.recipients.iter().any(|r| r == to)) {
            return (id, m.mail_from.clone());
        }
        assert!(
            Instant::now() < deadline,
            "the message to {to} never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `message` from `<>` to `to` at the MX after STARTTLS (smtplib,
/// without checking the certificate, as senders of reports do); what
/// smtplib saw, one line per step.
async fn over_starttls(mx: &str, to: &str, message: &str) -> String {
    const SCRIPT: &str = r#"
import smtplib, ssl, sys
host, port, to = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, port, timeout=20)
s.ehlo("fbl.hotmail.test")
print("offered", s.has_extn("starttls"))
s.starttls(context=ctx)
s.ehlo("fbl.hotmail.test")
print("again", s.has_extn("starttls"), "tls", s.sock.version())
s.mail("")
print("rcpt", s.rcpt(to)[0])
print("data", s.data(sys.stdin.read().encode())[0])
s.quit()
"#;
    let (host, port) = mx.rsplit_once(':').expect("host:port");
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", SCRIPT, host, port, to])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (the test command installs it)");
    let mut stdin = child.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, message.as_bytes())
        .await
        .expect("write the report");
    drop(stdin);
    let out = child.wait_with_output().await.expect("smtplib finished");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success()
            && text.contains("offered True")
            && text.contains("again False tls TLSv1."),
        "STARTTLS at the MX: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_bounce_to_the_verp_address_suppresses_the_recipient() {
    let sim = start_sim(INBOX).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dev.toml");
    let config = dev_config(dir.path(), &sim, "inbox", "inbox.test", "").replace(
        "[inbound]\n",
        &format!("[inbound]\nfeedback_addresses = [\"{FBL}\"]\n"),
    );
    std::fs::write(&file, config).expect("write");
    let dev = start_dev(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), &file).await;
    let mut ingest = IngestClient::connect(dev.ingest.clone())
        .await
        .expect("ingest");
    let token = std::fs::read_to_string(dir.path().join("data/control.token")).expect("token");
    let token = token.trim();
    let mut control =
        sluice_control_client::client(&format!("http://{}", dev.control), Some(token))
            .await
            .expect("control");
    let mut query = sluice_testkit::query::client(&dev.query, Some(token))
        .await
        .expect("query");

    // The return path the simulator saw is the one a late bounce goes to.
    let (id, verp) = delivered(&mut ingest, &sim, BOB).await;
    assert!(verp.starts_with(&format!("bounce+{id}-")), "{verp}");

    let mut mx = Client::connect(&dev.inbound).await;
    assert!(mx.say("EHLO mx.inbox.test").await.starts_with("250"));
    // Forged: another tag, a made-up address.
    let (local, domain) = verp.split_once('@').expect("address");
    let forged = format!(
        "{}-0000000000000000@{domain}",
        &local[..local.rfind('-').unwrap()]
    );
    for to in [forged.as_str(), "postmaster@sluice.test"] {
        let answer = mx.envelope(to).await;
        assert!(answer.starts_with("550 5.1.1"), "{to}: {answer}");
        assert!(mx.say("RSET").await.starts_with("250"));
    }
    // An automatic reply and a report that names no status change nothing.
    assert!(mx.envelope(&verp).await.starts_with("250"));
    let away =
        format!("From: {BOB}\r\nTo: {verp}\r\nSubject: Out of office\r\n\r\nAway until Monday.");
    let answer = mx.data(&away).await;
    assert!(
        answer.starts_with("250") && answer.contains("automatic reply"),
        "{answer}"
    );
    assert!(mx.envelope(&verp).await.starts_with("250"));
    let broken = report(&verp, BOB).replace("Status: 5.1.1", "Status: five");
    let answer = mx.data(&broken).await;
    assert!(answer.starts_with("550 5.6.0"), "{answer}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(suppressions(&mut control).await, [], "nothing recorded yet");

    // The report, with the address's case folded as some relays do.
    let folded = verp.to_ascii_lowercase();
    assert!(mx.envelope(&folded).await.starts_with("250"));
    let answer = mx.data(&report(&folded, BOB)).await;
    assert!(
        answer.starts_with("250") && answer.contains("1 statuses recorded"),
        "{answer}"
    );
    assert!(mx.say("QUIT").await.starts_with("221"));

    let within = Duration::from_secs(60);
    wait_for_suppressions(&mut control, &[(BOB, "hard_bounce")], within).await;
    let status = query
        .get_message(GetMessageRequest {
            message_id: id.clone(),
        })
        .await
        .expect("message")
        .into_inner();
    let late = status
        .history
        .iter()
        .find(|e| e.kind() == EventKind::Bounced)
        .expect("a bounced event in the message's history");
    assert_eq!(late.tenant, "dev", "the tenant came from the history");
    assert_eq!(late.recipient, BOB);
    assert_eq!(
        late.reply.as_ref().map(|r| r.enhanced_code.as_str()),
        Some("5.1.1")
    );
    assert!(
        status
            .history
            .iter()
            .any(|e| e.kind() == EventKind::Delivered)
    );

    let request = send_request("news@sluice.test", &[BOB.to_owned()], "more news");
    let again = ingest.send(request).await.expect("send").into_inner();
    assert!(again.recipients[0].suppressed, "{again:?}");

    // A complaint about Carol's message, at the feedback address; the report
    // claims another recipient, which is not trusted.
    let (_, carol_verp) = delivered(&mut ingest, &sim, CAROL).await;
    let mut mx = Client::connect(&dev.inbound).await;
    assert!(mx.say("EHLO fbl.hotmail.test").await.starts_with("250"));
    assert!(mx.envelope(FBL).await.starts_with("250"));
    let unmatched = complaint("someone@elsewhere.test", "eve@inbox.test");
    let answer = mx.data(&unmatched).await;
    assert!(answer.starts_with("550 5.6.0"), "{answer}");
    // The report itself comes over STARTTLS, from Python's smtplib.
    let answer = over_starttls(&dev.inbound, FBL, &complaint(&carol_verp, "eve@inbox.test")).await;
    assert!(answer.contains("data 250"), "{answer}");
    let both = [(BOB, "hard_bounce"), (CAROL, "complaint")];
    wait_for_suppressions(&mut control, &both, within).await;
}
