//! Feedback-loop complaints in the Abuse Reporting Format (RFC 5965), as
//! Yahoo, Microsoft (JMRP), Comcast and others send them:
//! `multipart/report; report-type=feedback-report` with a
//! `message/feedback-report` part and the original message (or its
//! headers). Pure: bytes in, the complaint and what names the message out.

use mail_parser::{Message, MessageParser, MimeHeaders};

/// One complaint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    /// `Feedback-Type` (`abuse`, `fraud`, `virus`, `other`, `not-spam`), lowercase.
    pub feedback_type: String,
    /// `Original-Rcpt-To`, when the feedback loop did not redact it.
    pub recipient: String,
    /// The original message's `Return-Path` (Sluice's VERP address, when
    /// the reporting server kept it).
    pub return_path: String,
    /// The original message's `Message-ID`, without angle brackets.
    pub message_id_header: String,
}

/// The complaint a message carries, if it is an ARF report.
pub fn read(message: &[u8]) -> Option<Complaint> {
    let parsed = MessageParser::default().parse(message)?;
    let report = parsed
        .parts
        .iter()
        .find(|part| is(part, "message", "feedback-report"))?;
    let fields = crate::dsn::fields(&String::from_utf8_lossy(report.contents()));
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let feedback_type = get("feedback-type").to_ascii_lowercase();
    if feedback_type.is_empty() {
        return None;
    }
    let (return_path, message_id_header) = original_headers(&parsed);
    Some(Complaint {
        feedback_type,
        recipient: get("original-rcpt-to").trim_matches(['<', '>']).to_owned(),
        return_path,
        message_id_header,
    })
}

fn is(part: &mail_parser::MessagePart<'_>, ctype: &str, subtype: &str) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
    })
}

/// `Return-Path` and `Message-ID` of the original: a `message/rfc822` part
/// or a `text/rfc822-headers` part.
fn original_headers(parsed: &Message<'_>) -> (String, String) {
    let clean = |v: &str| v.trim().trim_matches(['<', '>']).to_owned();
    for part in &parsed.parts {
        if let Some(original) = part.message() {
            let rp = original
                .header_raw("Return-Path")
                .map(clean)
                .unwrap_or_default();
            let id = original
                .header_raw("Message-ID")
                .map(clean)
                .unwrap_or_default();
            return (rp, id);
        }
        if is(part, "text", "rfc822-headers") {
            let text = String::from_utf8_lossy(part.contents()).into_owned();
            let fields = crate::dsn::fields(&text);
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| clean(v))
                    .unwrap_or_default()
            };
            return (get("return-path"), get("message-id"));
        }
    }
    (String::new(), String::new())
}

/// The message id in a `Message-ID` Sluice wrote (`<ULID@domain>`): 26
/// characters of Crockford base32 before the `@`.
pub fn sluice_message_id(header: &str) -> Option<String> {
    let (local, _) = header.split_once('@')?;
    let ulid = local.len() == 26
        && local
            .bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_alphabetic() && !b"ILOUilou".contains(&b)));
    ulid.then(|| local.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(original: &str) -> String {
        format!(
            "From: staff@hotmail.example\r\nSubject: complaint about message\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n\
             --F\r\nContent-Type: text/plain\r\n\r\nA user marked this as spam.\r\n\
             --F\r\nContent-Type: message/feedback-report\r\n\r\n\
             Feedback-Type: abuse\r\nUser-Agent: SomeFBL/1.0\r\nVersion: 1\r\n\
             Original-Rcpt-To: <carol@inbox.test>\r\nArrival-Date: Mon, 30 Nov 2026 21:00:00 +0000\r\n\r\n\
             --F\r\n{original}\r\n--F--\r\n"
        )
    }

    const ORIGINAL: &str = "Content-Type: message/rfc822\r\n\r\n\
        Return-Path: <bounce+01JD5Q3W7Z8X9Y0A1B2C3D4E5F-0123456789abcdef@b.example>\r\n\
        Message-ID: <01JD5Q3W7Z8X9Y0A1B2C3D4E5F@acme.example>\r\n\
        Subject: spring news\r\n\r\nHello\r\n";

    #[test]
    fn a_report_names_type_recipient_and_the_original() {
        let complaint = read(report(ORIGINAL).as_bytes()).expect("a complaint");
        assert_eq!(complaint.feedback_type, "abuse");
        assert_eq!(complaint.recipient, "carol@inbox.test");
        assert!(
            complaint
                .return_path
                .starts_with("bounce+01JD5Q3W7Z8X9Y0A1B2C3D4E5F-")
        );
        assert_eq!(
            sluice_message_id(&complaint.message_id_header).as_deref(),
            Some("01JD5Q3W7Z8X9Y0A1B2C3D4E5F")
        );
    }

    #[test]
    fn headers_only_originals_and_redacted_recipients_are_read() {
        let headers = ORIGINAL.replace("message/rfc822", "text/rfc822-headers");
        let text = report(&headers).replace("Original-Rcpt-To: <carol@inbox.test>\r\n", "");
        let complaint = read(text.as_bytes()).expect("a complaint");
        assert!(complaint.recipient.is_empty());
        assert_eq!(
            complaint.message_id_header,
            "01JD5Q3W7Z8X9Y0A1B2C3D4E5F@acme.example"
        );
    }

    #[test]
    fn other_mail_and_broken_reports_are_no_complaints() {
        assert_eq!(read(b"Subject: hi\r\n\r\nhello\r\n"), None);
        let untyped = report(ORIGINAL).replace("Feedback-Type: abuse\r\n", "");
        assert_eq!(read(untyped.as_bytes()), None);
        assert_eq!(sluice_message_id("someone-else@x.example"), None);
        assert_eq!(
            sluice_message_id("01JD5Q3W7Z8X9Y0A1B2C3D4E5I@x"),
            None,
            "I is not Crockford"
        );
    }
}
