//! SMTP submission with Python's smtplib as the independent client.

use std::process::Command;

use crate::common::{self, Options, SMTP_PASSWORD, SMTP_USER, header};

/// Runs a smtplib script with `host port user password` and returns its
/// stdout lines; the script prints one result per step.
fn smtplib(script: &str, addr: std::net::SocketAddr, password: &str) -> Vec<String> {
    let output = Command::new("python3")
        .args([
            "-c",
            script,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            SMTP_USER,
            password,
        ])
        .output()
        .expect("these tests need python3 (smtplib is the independent SMTP client)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "smtplib script failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

const PRELUDE: &str = r#"
import smtplib, ssl, sys
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def result(step, reply):
    print(step, reply[0], reply[1].decode(errors="replace").replace("\n", " "))
MSG = ("From: Acme <news@acme.example>\r\nTo: ann@example.org\r\nSubject: smtp test\r\n\r\n"
       "line one\r\n.leading dot\r\nend\r\n  \r\n")
"#;

const SUBMIT_587: &str = r#"
s = smtplib.SMTP(host, port, timeout=20)
s.ehlo("client.test")
result("starttls", s.starttls(context=ctx))
s.ehlo("client.test")
result("login", s.login(user, password))
refused = s.sendmail("news@acme.example", ["ann@example.org", "bob@example.org"], MSG)
print("refused", len(refused))
result("quit", s.quit())
"#;

const SUBMIT_465: &str = r#"
s = smtplib.SMTP_SSL(host, port, context=ctx, timeout=20)
s.ehlo("client.test")
s.login(user, password)
s.sendmail("", ["carl@example.org"], MSG)
print("sent")
s.quit()
"#;

const REFUSALS: &str = r#"
s = smtplib.SMTP(host, port, timeout=20)
s.ehlo("client.test")
result("auth-before-tls", s.docmd("AUTH", "PLAIN AGFjbWUAeA=="))
result("mail-before-auth", s.docmd("MAIL", "FROM:<news@acme.example>"))
s.starttls(context=ctx)
s.ehlo("client.test")
try:
    s.login(user, "wrong-password")
except smtplib.SMTPAuthenticationError as e:
    print("bad-login", e.smtp_code)
result("mail-before-auth-tls", s.docmd("MAIL", "FROM:<news@acme.example>"))
s.login(user, password)
result("foreign-mail-from", s.docmd("MAIL", "FROM:<x@globex.example>"))
result("mail", s.docmd("MAIL", "FROM:<news@acme.example>"))
result("bad-rcpt", s.docmd("RCPT", "TO:<not an address>"))
result("rcpt", s.docmd("RCPT", "TO:<ann@example.org>"))
result("data", s.docmd("DATA"))
s.send(b"From: x@globex.example\r\nSubject: foreign\r\n\r\nbody\r\n.\r\n")
result("foreign-from-header", s.getreply())
result("bogus", s.docmd("FROB"))
s.quit()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_587_with_starttls_and_465_with_implicit_tls_publish_signed_mail() {
    let node = common::start(Options::default()).await;
    let (addr, tls_addr) = (node.smtp, node.smtps);
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = smtplib(&format!("{PRELUDE}{SUBMIT_587}"), addr, SMTP_PASSWORD);
        lines.extend(smtplib(
            &format!("{PRELUDE}{SUBMIT_465}"),
            tls_addr,
            SMTP_PASSWORD,
        ));
        lines
    })
    .await
    .expect("smtplib");
    assert!(lines[0].starts_with("starttls 220"), "{lines:?}");
    assert!(lines[1].starts_with("login 235"), "{lines:?}");
    assert_eq!(lines[2], "refused 0", "{lines:?}");
    assert!(lines.contains(&"sent".to_owned()), "{lines:?}");

    let envelopes = node.envelopes("shared", 3).await;
    let recipients: Vec<_> = envelopes.iter().map(|e| e.recipient.as_str()).collect();
    assert_eq!(
        recipients,
        ["ann@example.org", "bob@example.org", "carl@example.org"]
    );
    for envelope in &envelopes {
        let content = &envelope.content;
        assert!(header(content, "Date").is_some(), "Date added");
        assert!(header(content, "Message-ID").is_some(), "Message-ID added");
        let body = b"\r\n\r\nline one\r\n.leading dot\r\nend\r\n";
        assert!(
            content.ends_with(body),
            "dot-unstuffed, trailing blank lines dropped: {:?}",
            String::from_utf8_lossy(content)
        );
    }
    let contents: Vec<_> = envelopes.iter().map(|e| e.content.clone()).collect();
    common::dkimpy_verify(&node, &contents).expect("dkimpy verifies SMTP-submitted mail");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_refuses_unauthenticated_and_foreign_senders() {
    let node = common::start(Options::default()).await;
    let addr = node.smtp;
    let lines = tokio::task::spawn_blocking(move || {
        smtplib(&format!("{PRELUDE}{REFUSALS}"), addr, SMTP_PASSWORD)
    })
    .await
    .expect("smtplib");
    let code = |step: &str| -> String {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{step} ")))
            .unwrap_or_else(|| panic!("no {step} in {lines:?}"));
        line.split(' ').nth(1).unwrap_or_default().to_owned()
    };
    assert_eq!(code("auth-before-tls"), "538");
    assert_eq!(code("mail-before-auth"), "530");
    assert_eq!(code("bad-login"), "535");
    assert_eq!(code("mail-before-auth-tls"), "530");
    assert_eq!(code("foreign-mail-from"), "550");
    assert_eq!(code("mail"), "250");
    assert_eq!(code("bad-rcpt"), "501");
    assert_eq!(code("rcpt"), "250");
    assert_eq!(code("data"), "354");
    assert_eq!(code("foreign-from-header"), "550");
    assert_eq!(code("bogus"), "500");
    node.stop().await;
}

const SLOW_DATA: &str = r#"
s = smtplib.SMTP(host, port, timeout=20)
s.ehlo("client.test")
s.starttls(context=ctx)
s.ehlo("client.test")
s.login(user, password)
s.docmd("MAIL", "FROM:<news@acme.example>")
s.docmd("RCPT", "TO:<ann@example.org>")
result("data", s.docmd("DATA"))
s.send(b"From: news@acme.example\r\nSubject: slow\r\n")
result("stalled", s.getreply())
try:
    print("after", s.docmd("NOOP")[0])
except smtplib.SMTPServerDisconnected:
    print("after closed")
"#;

/// A body that is not finished within `smtp.data_timeout` (1 s here) is
/// refused with 421 and the session ends; nothing is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_data_timeout_is_refused_and_the_session_closed() {
    let node = common::start(Options {
        data_timeout: "1s",
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    let lines = smtplib(&format!("{PRELUDE}{SLOW_DATA}"), node.smtp, SMTP_PASSWORD);
    let step = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(name))
            .cloned()
            .unwrap_or_default()
    };
    assert!(step("data ").starts_with("data 354"), "{lines:?}");
    assert!(
        step("stalled").starts_with("stalled 421 4.4.2"),
        "{lines:?}"
    );
    assert_eq!(step("after"), "after closed", "{lines:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    node.stop().await;
}
