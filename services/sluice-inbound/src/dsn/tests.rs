use super::*;

/// A report as Postfix writes one, for `recipient` with `action` and
/// `status`.
fn report(recipient: &str, action: &str, status: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.net\r\n\
         To: bounce+01JD5Q3W7Z8X9Y0A1B2C3D4E5F-0123456789abcdef@b.example\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\
         --B1\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.example.net\r\n\
         Arrival-Date: Mon, 30 Nov 2026 21:00:00 +0000\r\n\
         \r\n\
         Final-Recipient: rfc822; {recipient}\r\n\
         Original-Recipient: rfc822;{recipient}\r\n\
         Action: {action}\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address\r\n \
          rejected: User unknown\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         Subject: spring news\r\n\
         --B1--\r\n"
    )
}

#[test]
fn a_failed_report_names_recipient_status_and_diagnostic() {
    let finding = read(report("bob@example.org", "failed", "5.1.1").as_bytes());
    let Finding::Bounce(statuses) = finding else {
        panic!("not a bounce: {finding:?}");
    };
    assert_eq!(statuses.len(), 1);
    let s = &statuses[0];
    assert_eq!(s.recipient, "bob@example.org");
    assert!(s.failed);
    assert_eq!(s.status, EnhancedCode::new(5, 1, 1));
    assert!(
        s.diagnostic
            .starts_with("550 5.1.1 <bob@example.org>: Recipient address rejected"),
        "folded line joined: {}",
        s.diagnostic
    );
}

#[test]
fn a_delayed_report_is_not_a_failure_and_a_delivered_one_says_nothing() {
    let Finding::Bounce(delayed) = read(report("a@x.org", "delayed", "4.4.1").as_bytes()) else {
        panic!("delayed");
    };
    assert!(!delayed[0].failed);
    assert_eq!(delayed[0].status, EnhancedCode::new(4, 4, 1));
    assert_eq!(
        read(report("a@x.org", "delivered", "2.0.0").as_bytes()),
        Finding::Bounce(Vec::new())
    );
}

#[test]
fn a_providers_own_bounce_is_read_by_its_subject_and_code() {
    let message = "From: mailer-daemon@googlemail.com\r\n\
                   Subject: Delivery Status Notification (Failure)\r\n\
                   Content-Type: text/plain\r\n\r\n\
                   Address not found\r\n\
                   The response was:\r\n\
                   550 5.1.1 The email account that you tried to reach does not exist.\r\n";
    let Finding::Bounce(statuses) = read(message.as_bytes()) else {
        panic!("not read");
    };
    assert_eq!(statuses[0].status, EnhancedCode::new(5, 1, 1));
    assert!(statuses[0].recipient.is_empty());
    assert!(statuses[0].diagnostic.contains("does not exist"));
}

#[test]
fn auto_replies_are_not_bounces() {
    for headers in [
        "Auto-Submitted: auto-replied\r\nSubject: Re: spring news\r\n",
        "X-Autoreply: yes\r\nSubject: Re: spring news\r\n",
        "Subject: Out of Office: back on Monday\r\n",
        "Precedence: auto_reply\r\nSubject: thanks\r\n",
    ] {
        let message = format!("From: ann@example.org\r\n{headers}\r\nI am away.\r\n");
        assert_eq!(read(message.as_bytes()), Finding::AutoReply, "{headers}");
    }
}

#[test]
fn anything_else_is_unrecognised_and_nothing_panics() {
    let human = "From: ann@example.org\r\nSubject: hello\r\n\r\nPlease call me.\r\n";
    assert_eq!(read(human.as_bytes()), Finding::Unrecognised);
    // A report whose status group is cut short reads as no statuses.
    let cut = report("bob@example.org", "failed", "5.1.1");
    let cut = &cut[..cut.find("Action:").unwrap()];
    assert_eq!(read(cut.as_bytes()), Finding::Bounce(Vec::new()));
    for junk in [
        &b""[..],
        b"\0\xff\xfe",
        b"Content-Type: multipart/report\r\n\r\n--",
        b"::::\r\n\r\n",
    ] {
        let _ = read(junk);
    }
    let bad_status = report("bob@example.org", "failed", "five.one.one");
    assert_eq!(read(bad_status.as_bytes()), Finding::Bounce(Vec::new()));
}
