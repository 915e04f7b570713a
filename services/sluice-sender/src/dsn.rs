//! Delivery status notifications (RFC 3464) to SMTP submitters: when a
//! message whose envelope names `dsn_to` (an SMTP submission of a tenant
//! with `smtp_dsn` on) finally bounces or expires, the fate carries one more
//! message — a `multipart/report; report-type=delivery-status` from the
//! mailer daemon to that address, with the null return path — published to
//! the pool's outbound topic with its own `accepted` event, and delivered
//! like any other message. A notification names no `dsn_to`, so it never
//! causes another. Its id is derived from the failed message's, so a fate
//! published again after a crash repeats the same notification rather than
//! adding one (docs/feedback.md).

use std::collections::HashMap;

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use sluice_proto::v1::{BounceClass, Envelope, Event, EventKind, Priority, SmtpReply};
use sluice_shaping::Millis;

use crate::fate::{self, AttemptInfo, timestamp};

/// How long a notification may take to be delivered (Postfix's
/// `bounce_queue_lifetime` default).
const LIFETIME_MS: u64 = 5 * 24 * 3600 * 1000;
/// Longest reply text quoted in a report field.
const MAX_QUOTED_REPLY: usize = 900;
/// Most bytes of the failed message's header section quoted.
const MAX_QUOTED_HEADERS: usize = 64 * 1024;
/// The tag naming the failed message on a notification and its events.
pub const TAG: &str = "dsn_for";

/// One notification, ready to publish with the fate.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The pool's outbound topic.
    pub topic: String,
    /// The notification, to `dsn_to`, from the null sender.
    pub envelope: Envelope,
    /// Its `accepted` event.
    pub accepted: Event,
}

/// The notification `envelope`'s final `event` calls for: one when the
/// envelope names `dsn_to` and the event is `bounced` or `expired`.
pub fn notice(
    envelope: &Envelope,
    event: &Event,
    topic: String,
    reporter: &str,
    now: Millis,
) -> Option<Notice> {
    let failed = matches!(event.kind(), EventKind::Bounced | EventKind::Expired);
    if envelope.dsn_to.is_empty() || !failed {
        return None;
    }
    let message_id = notice_id(&envelope.message_id);
    let content = report(envelope, event, reporter, &message_id, now);
    let mut tags = HashMap::new();
    tags.insert(TAG.to_owned(), envelope.message_id.clone());
    let dsn = Envelope {
        message_id,
        tenant: envelope.tenant.clone(),
        pool: envelope.pool.clone(),
        recipient: envelope.dsn_to.clone(),
        content,
        not_before: Some(timestamp(now)),
        expires_at: Some(timestamp(Millis(now.0 + LIFETIME_MS))),
        priority: Priority::Transactional.into(),
        tags,
        accepted_at: Some(timestamp(now)),
        ..Default::default()
    };
    let info = AttemptInfo::default();
    let accepted = fate::event(
        &dsn,
        EventKind::Accepted,
        None,
        BounceClass::Unspecified,
        &info,
        now,
    );
    Some(Notice {
        topic,
        envelope: dsn,
        accepted,
    })
}

/// The notification's message id: a ULID with the failed message's time
/// and randomness derived from its id, so the same failure always yields
/// the same notification id (and the two never collide).
pub fn notice_id(failed: &str) -> String {
    let time = ulid::Ulid::from_string(failed).map_or(0, |u| u.timestamp_ms());
    let digest = failed
        .bytes()
        .chain(*b"/dsn")
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    let random = (u128::from(digest) << 16) ^ u128::from(digest.rotate_left(29));
    ulid::Ulid::from_parts(time, random).to_string()
}

/// The report itself (RFC 3464 §2): an explanation, the delivery status,
/// and the failed message's header section.
fn report(envelope: &Envelope, event: &Event, reporter: &str, id: &str, now: Millis) -> Vec<u8> {
    let expired = event.kind() == EventKind::Expired;
    let reply = event.reply.clone().unwrap_or_default();
    let mut parts = vec![
        MimePart::new(
            "text/plain",
            explanation(envelope, &reply, reporter, expired),
        ),
        MimePart::new(
            "message/delivery-status",
            status(envelope, event, &reply, reporter, expired),
        ),
    ];
    let headers = sluice_smtp::header_section(&envelope.content, MAX_QUOTED_HEADERS);
    if !headers.is_empty() {
        parts.push(MimePart::new("text/rfc822-headers", headers));
    }
    let subject = match expired {
        true => "Delivery expired: message not delivered in time",
        false => "Undelivered Mail Returned to Sender",
    };
    let report_type =
        ContentType::new("multipart/report").attribute("report-type", "delivery-status");
    let daemon = format!("MAILER-DAEMON@{reporter}");
    MessageBuilder::new()
        .from(("Mail Delivery System", daemon.as_str()))
        .to(envelope.dsn_to.as_str())
        .subject(subject)
        .message_id(format!("{id}@{reporter}"))
        .date(Date::new((now.0 / 1000) as i64))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(MimePart::new(report_type, parts))
        .write_to_vec()
        .unwrap_or_default()
}

fn explanation(envelope: &Envelope, reply: &SmtpReply, reporter: &str, expired: bool) -> String {
    let why = match expired {
        true => "could not be delivered before it expired; the last attempt was answered",
        false => "was refused for good; the receiving side answered",
    };
    format!(
        "This is the mail system at {reporter}.\r\n\r\n\
         Your message to <{rcpt}> {why}:\r\n\r\n    {reply}\r\n\r\n\
         The delivery status and your message's headers are attached.\r\n",
        rcpt = envelope.recipient,
        reply = quoted(reply),
    )
}

fn status(
    envelope: &Envelope,
    event: &Event,
    reply: &SmtpReply,
    reporter: &str,
    expired: bool,
) -> String {
    let date =
        |at: &Option<prost_types::Timestamp>| at.as_ref().map(|t| Date::new(t.seconds).to_rfc822());
    let mut out = format!("Reporting-MTA: dns; {reporter}\r\n");
    if let Some(arrived) = date(&envelope.accepted_at) {
        out.push_str(&format!("Arrival-Date: {arrived}\r\n"));
    }
    out.push_str(&format!(
        "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
        envelope.recipient,
        status_code(reply, expired)
    ));
    if !event.mx_host.is_empty() {
        out.push_str(&format!("Remote-MTA: dns; {}\r\n", event.mx_host));
    }
    let kind = if reply.synthetic { "X-Sluice" } else { "smtp" };
    out.push_str(&format!("Diagnostic-Code: {kind}; {}\r\n", quoted(reply)));
    if let Some(last) = date(&event.at) {
        out.push_str(&format!("Last-Attempt-Date: {last}\r\n"));
    }
    out
}

/// The reply's enhanced code when it fits the failure (5.x.x for a bounce,
/// any for an expiry), else 5.0.0 or 4.4.7 (delivery time expired).
fn status_code(reply: &SmtpReply, expired: bool) -> String {
    let code = reply.enhanced_code.as_str();
    let shaped =
        code.split('.').count() == 3 && code.chars().all(|c| c.is_ascii_digit() || c == '.');
    match (expired, shaped) {
        (true, true) => code.to_owned(),
        (true, false) => "4.4.7".to_owned(),
        (false, true) if code.starts_with('5') => code.to_owned(),
        (false, _) => "5.0.0".to_owned(),
    }
}

/// `550 5.1.1 text` on one line, cut at [`MAX_QUOTED_REPLY`] characters.
fn quoted(reply: &SmtpReply) -> String {
    let text: String = reply
        .text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTED_REPLY)
        .collect();
    match (reply.code, reply.enhanced_code.is_empty()) {
        (0, _) => text,
        (code, true) => format!("{code} {text}"),
        (code, false) => format!("{code} {} {text}", reply.enhanced_code),
    }
}

#[cfg(test)]
#[path = "dsn_tests.rs"]
mod tests;
