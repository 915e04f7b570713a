use sluice_proto::v1::{BounceClass, Envelope, EventKind, SmtpReply};
use sluice_shaping::Millis;

use super::*;
use crate::fate::{AttemptInfo, event, synthetic};

const FAILED_ID: &str = "01JD0000000000000000000000";
const ORIGINAL: &[u8] = b"From: app@shop.example\r\nSubject: Your order\r\nMessage-ID: <o1@shop.example>\r\n\r\nThe body stays out.\r\n";

fn submitted() -> Envelope {
    Envelope {
        message_id: FAILED_ID.into(),
        tenant: "shop".into(),
        pool: "default".into(),
        return_path: "bounce+x@shop.example".into(),
        recipient: "gone@inbox.example".into(),
        content: ORIGINAL.to_vec(),
        dsn_to: "app@shop.example".into(),
        accepted_at: Some(timestamp(Millis(1_700_000_000_000))),
        ..Default::default()
    }
}

fn final_event(envelope: &Envelope, kind: EventKind, reply: SmtpReply) -> Event {
    let info = AttemptInfo {
        mx_host: "mx.inbox.example".into(),
        ..Default::default()
    };
    event(
        envelope,
        kind,
        Some(reply),
        BounceClass::BadMailbox,
        &info,
        Millis(1_700_000_100_000),
    )
}

fn reply(code: u32, enhanced: &str, text: &str) -> SmtpReply {
    SmtpReply {
        code,
        enhanced_code: enhanced.into(),
        text: text.into(),
        synthetic: false,
    }
}

fn notice_of(envelope: &Envelope, event: &Event) -> Option<Notice> {
    notice(
        envelope,
        event,
        "sluice.outbound.default".into(),
        "mta.shop.example",
        Millis(1_700_000_200_000),
    )
}

#[test]
fn only_a_final_failure_of_a_message_naming_dsn_to_gets_one() {
    let envelope = submitted();
    let gone = reply(550, "5.1.1", "no such user");
    let delivered = final_event(&envelope, EventKind::Delivered, reply(250, "2.0.0", "ok"));
    assert!(notice_of(&envelope, &delivered).is_none());
    let deferred = final_event(&envelope, EventKind::Deferred, reply(451, "4.3.0", "later"));
    assert!(notice_of(&envelope, &deferred).is_none());
    let mut api = envelope.clone();
    api.dsn_to.clear();
    assert!(notice_of(&api, &final_event(&api, EventKind::Bounced, gone.clone())).is_none());
    assert!(notice_of(&envelope, &final_event(&envelope, EventKind::Bounced, gone)).is_some());
}

#[test]
fn a_bounce_notice_goes_from_the_null_sender_and_never_asks_for_another() {
    let envelope = submitted();
    let bounced = final_event(
        &envelope,
        EventKind::Bounced,
        reply(550, "5.1.1", "no such user"),
    );
    let notice = notice_of(&envelope, &bounced).expect("a notice");
    let dsn = &notice.envelope;
    assert_eq!(notice.topic, "sluice.outbound.default");
    assert_eq!(
        (dsn.recipient.as_str(), dsn.return_path.as_str()),
        ("app@shop.example", "")
    );
    assert!(dsn.dsn_to.is_empty(), "a notification causes none");
    assert_eq!(
        (dsn.tenant.as_str(), dsn.pool.as_str()),
        ("shop", "default")
    );
    assert_eq!(dsn.tags.get(TAG).map(String::as_str), Some(FAILED_ID));
    assert_eq!(notice.accepted.kind(), EventKind::Accepted);
    assert_eq!(notice.accepted.message_id, dsn.message_id);
    assert_eq!(
        dsn.message_id,
        notice_id(FAILED_ID),
        "the same failure, the same id"
    );
    assert_ne!(dsn.message_id, FAILED_ID);
    assert_ne!(
        notice_id(FAILED_ID),
        notice_id("01JD0000000000000000000001")
    );
}

#[test]
fn the_report_parses_as_rfc_3464_with_the_status_and_the_headers() {
    let envelope = submitted();
    let bounced = final_event(
        &envelope,
        EventKind::Bounced,
        reply(550, "5.1.1", "no such\nuser"),
    );
    let content = notice_of(&envelope, &bounced)
        .expect("a notice")
        .envelope
        .content;
    let report = sluice_testkit::mime::delivery_report(&content);
    let text = String::from_utf8_lossy(&content);
    assert!(text.contains("MAILER-DAEMON@mta.shop.example"), "{text}");
    let status = report.status;
    for field in [
        "Reporting-MTA: dns; mta.shop.example",
        "Final-Recipient: rfc822; gone@inbox.example",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; mx.inbox.example",
        "Diagnostic-Code: smtp; 550 5.1.1 no such user",
        "Arrival-Date: ",
        "Last-Attempt-Date: ",
    ] {
        assert!(status.contains(field), "{field} missing from {status}");
    }
    let headers = report.headers;
    assert!(headers.contains("Subject: Your order"), "{headers}");
    assert!(!headers.contains("The body stays out"), "{headers}");
}

#[test]
fn an_expiry_after_local_failures_says_so() {
    let envelope = submitted();
    let local = synthetic(451, "4.4.1", "connection refused");
    let expired = final_event(&envelope, EventKind::Expired, local);
    let notice = notice_of(&envelope, &expired).expect("a notice");
    let text = String::from_utf8_lossy(&notice.envelope.content).into_owned();
    assert!(text.contains("Subject: Delivery expired"), "{text}");
    assert!(text.contains("Status: 4.4.1"), "{text}");
    assert!(
        text.contains("Diagnostic-Code: X-Sluice; 451 4.4.1 connection refused"),
        "{text}"
    );
    let mut no_code = envelope.clone();
    no_code.dsn_to = "app@shop.example".into();
    let expired = final_event(&no_code, EventKind::Expired, reply(421, "", "busy"));
    let text = String::from_utf8_lossy(&notice_of(&no_code, &expired).unwrap().envelope.content)
        .into_owned();
    assert!(text.contains("Status: 4.4.7"), "{text}");
}

#[test]
fn a_bounce_with_a_temporary_or_missing_code_reports_5_0_0() {
    assert_eq!(status_code(&reply(554, "", "no"), false), "5.0.0");
    assert_eq!(status_code(&reply(550, "4.2.2", "odd"), false), "5.0.0");
    assert_eq!(status_code(&reply(550, "5.7.1", "policy"), false), "5.7.1");
}
