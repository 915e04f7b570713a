//! Late feedback about accepted mail, as mailbox providers send it: which
//! recipients get some, and the reports themselves — a delivery status
//! notification (RFC 3464) to the message's `MAIL FROM` for a mailbox found
//! disabled after acceptance, and an Abuse Reporting Format report (RFC 5965)
//! to the sender's feedback-loop address for a spam complaint. Sending is in
//! `outbox.rs`.

use crate::message::{fnv64, message_id};
use crate::report::AcceptedMessage;
use crate::scenario::Feedback;

/// Most bytes of the original header section quoted in a report.
const MAX_QUOTED_HEADERS: usize = 16 * 1024;

/// Which kind of feedback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Bounce,
    Complaint { to: String },
}

impl Kind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Bounce => "bounce",
            Kind::Complaint { .. } => "complaint",
        }
    }
}

/// One report waiting for its time.
#[derive(Debug, Clone)]
pub(crate) struct Due {
    pub kind: Kind,
    pub at_unix_ms: u64,
    pub recipient: String,
    pub mail_from: String,
    pub message_id: String,
    /// The original header section, each line ending in CRLF.
    pub headers: String,
    /// The provider's host name, which reports come from.
    pub reporter: String,
}

impl Due {
    /// Where the report is mailed.
    pub(crate) fn to(&self) -> &str {
        match &self.kind {
            Kind::Bounce => &self.mail_from,
            Kind::Complaint { to } => to,
        }
    }

    /// The whole report, CRLF line endings.
    pub(crate) fn report(&self) -> String {
        match &self.kind {
            Kind::Bounce => self.dsn(),
            Kind::Complaint { to } => self.arf(to),
        }
    }

    fn dsn(&self) -> String {
        let (host, rcpt) = (&self.reporter, &self.recipient);
        format!(
            "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\nTo: <{to}>\r\n\
             Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <{id}@{host}>\r\n\
             Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"{B}\"\r\n\r\n\
             --{B}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
             Your message was accepted, but the mailbox of <{rcpt}> has since been\r\n\
             disabled and it could not be delivered.\r\n\r\n\
             --{B}\r\nContent-Type: message/delivery-status\r\n\r\n\
             Reporting-MTA: dns; {host}\r\n\r\n\
             Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
             Remote-MTA: dns; {host}\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: mailbox disabled after delivery\r\n\r\n\
             --{B}\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--{B}--\r\n",
            to = self.mail_from,
            id = self.report_id(),
            headers = self.headers,
            B = BOUNDARY,
        )
    }

    fn arf(&self, to: &str) -> String {
        let (host, rcpt, from) = (&self.reporter, &self.recipient, &self.mail_from);
        format!(
            "From: Feedback Loop <fbl@{host}>\r\nTo: <{to}>\r\nSubject: Complaint about a message\r\n\
             Message-ID: <{id}@{host}>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"{B}\"\r\n\r\n\
             --{B}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
             A user of {host} reported this message as spam.\r\n\r\n\
             --{B}\r\nContent-Type: message/feedback-report\r\n\r\n\
             Feedback-Type: abuse\r\nUser-Agent: sluice-sim/1\r\nVersion: 1\r\n\
             Original-Mail-From: <{from}>\r\nOriginal-Rcpt-To: <{rcpt}>\r\n\
             Reported-Domain: {domain}\r\n\r\n\
             --{B}\r\nContent-Type: text/rfc822-headers\r\n\r\n\
             Return-Path: <{from}>\r\n{headers}\r\n--{B}--\r\n",
            id = self.report_id(),
            domain = from.rsplit_once('@').map_or("", |(_, d)| d),
            headers = self.headers,
            B = BOUNDARY,
        )
    }

    fn report_id(&self) -> String {
        let seed = format!(
            "{}|{}|{}",
            self.kind.name(),
            self.recipient,
            self.message_id
        );
        format!("fb{:016x}", fnv64(seed.as_bytes()))
    }
}

const BOUNDARY: &str = "sim-report-7d1f";

/// The feedback `recipient` gets under `config`, if any: drawn from a hash
/// of the address, so the same recipients are picked in every run.
pub(crate) fn pick(config: &Feedback, recipient: &str) -> Option<Kind> {
    let draw = fnv64(recipient.to_ascii_lowercase().as_bytes()) as f64 / u64::MAX as f64;
    if draw < config.bounce_share {
        return Some(Kind::Bounce);
    }
    if draw < config.bounce_share + config.complaint_share {
        let to = config.complaint_to.clone()?;
        return Some(Kind::Complaint { to });
    }
    None
}

/// The reports `message` (whose bytes are `body`) will cause, due
/// `config.delay_ms` after `now_ms`. A message with the null sender gets no
/// bounce (there is nowhere to send it).
pub(crate) fn reports(
    config: &Feedback,
    message: &AcceptedMessage,
    body: &[u8],
    reporter: &str,
    now_ms: u64,
) -> Vec<Due> {
    let mut headers = None;
    let mut due = Vec::new();
    for recipient in &message.recipients {
        let Some(kind) = pick(config, recipient) else {
            continue;
        };
        if kind == Kind::Bounce && message.mail_from.is_empty() {
            continue;
        }
        let headers = headers
            .get_or_insert_with(|| sluice_smtp::header_section(body, MAX_QUOTED_HEADERS))
            .clone();
        due.push(Due {
            kind,
            at_unix_ms: now_ms + config.delay_ms,
            recipient: recipient.clone(),
            mail_from: message.mail_from.clone(),
            message_id: message_id(body),
            headers,
            reporter: reporter.to_string(),
        });
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bounce: f64, complaint: f64) -> Feedback {
        Feedback {
            bounce_share: bounce,
            complaint_share: complaint,
            complaint_to: Some("fbl@sender.test".into()),
            delay_ms: 50,
        }
    }

    fn accepted(recipients: &[String]) -> AcceptedMessage {
        AcceptedMessage {
            provider: "p".into(),
            server: "127.0.0.1:25".parse().unwrap(),
            source_ip: "127.0.0.1".parse().unwrap(),
            message_id: "<m1@sender.test>".into(),
            mail_from: "bounce+m1-abc@b.sender.test".into(),
            recipients: recipients.to_vec(),
            size: 10,
            tls: false,
            accepted_at_unix_ms: 0,
        }
    }

    const BODY: &[u8] = b"Message-ID: <m1@sender.test>\r\nSubject: hi\r\n\r\nbody\r\n";

    #[test]
    fn shares_pick_about_that_many_and_the_same_ones_every_time() {
        let c = config(0.2, 0.1);
        let rcpts: Vec<String> = (0..10_000).map(|i| format!("u{i}@x.test")).collect();
        let kinds: Vec<_> = rcpts.iter().map(|r| pick(&c, r)).collect();
        let bounces = kinds.iter().filter(|k| **k == Some(Kind::Bounce)).count();
        let complaints = kinds
            .iter()
            .filter(|k| matches!(k, Some(Kind::Complaint { .. })))
            .count();
        assert!((1800..2200).contains(&bounces), "{bounces}");
        assert!((850..1150).contains(&complaints), "{complaints}");
        let again: Vec<_> = rcpts.iter().map(|r| pick(&c, r)).collect();
        assert_eq!(kinds, again);
        assert!(rcpts.iter().all(|r| pick(&config(0.0, 0.0), r).is_none()));
    }

    #[test]
    fn a_bounce_names_the_recipient_and_quotes_the_headers() {
        let all = vec!["a@x.test".to_string()];
        let due = reports(&config(1.0, 0.0), &accepted(&all), BODY, "mx.x.sim", 1000);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].at_unix_ms, 1050);
        assert_eq!(due[0].to(), "bounce+m1-abc@b.sender.test");
        let dsn = due[0].report();
        assert!(dsn.contains("report-type=delivery-status"));
        assert!(
            dsn.contains("Final-Recipient: rfc822; a@x.test\r\nAction: failed\r\nStatus: 5.1.1")
        );
        assert!(dsn.contains("Message-ID: <m1@sender.test>\r\nSubject: hi\r\n"));
        assert!(!dsn.contains("\nbody"), "only headers are quoted");
    }

    #[test]
    fn a_complaint_goes_to_the_feedback_address_with_the_return_path() {
        let all = vec!["a@x.test".to_string()];
        let due = reports(&config(0.0, 1.0), &accepted(&all), BODY, "mx.x.sim", 0);
        assert_eq!(due[0].to(), "fbl@sender.test");
        let arf = due[0].report();
        assert!(arf.contains("Feedback-Type: abuse\r\nUser-Agent: sluice-sim/1\r\nVersion: 1\r\n"));
        assert!(arf.contains("Original-Rcpt-To: <a@x.test>"));
        assert!(arf.contains(
            "Return-Path: <bounce+m1-abc@b.sender.test>\r\nMessage-ID: <m1@sender.test>"
        ));
    }

    #[test]
    fn the_null_sender_gets_no_bounce() {
        let mut message = accepted(&["a@x.test".to_string()]);
        message.mail_from.clear();
        assert!(reports(&config(1.0, 0.0), &message, BODY, "h", 0).is_empty());
    }
}
