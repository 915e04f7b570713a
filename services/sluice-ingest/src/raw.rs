//! Raw RFC 5322 messages: structure checks, line-ending normalization, and
//! the per-recipient copy with the headers ingest adds.

use mail_builder::headers::date::Date;

use crate::IngestError;
use crate::compose::Copy;

/// A checked raw message.
#[derive(Debug)]
pub struct RawMessage {
    bytes: Vec<u8>,
    from: String,
    /// The `Sender` header's value, if any (its domain is checked too).
    sender: Option<String>,
    has_date: bool,
    has_message_id: bool,
    has_list_unsubscribe: bool,
    has_feedback_id: bool,
}

impl RawMessage {
    /// Normalizes line endings to CRLF and checks the header section.
    pub fn parse(raw: &[u8]) -> Result<Self, IngestError> {
        let bytes = crlf(raw);
        let header_end = find(&bytes, b"\r\n\r\n").map_or(bytes.len(), |i| i + 2);
        let mut message = Self {
            bytes,
            from: String::new(),
            sender: None,
            has_date: false,
            has_message_id: false,
            has_list_unsubscribe: false,
            has_feedback_id: false,
        };
        let mut froms = 0;
        let header = message.bytes[..header_end].to_vec();
        for (number, (name, value)) in fields(&header)?.into_iter().enumerate() {
            let at = format!("header {}", number + 1);
            crate::validate::not_a_receiver_header("raw", &at, &name)?;
            match name.to_ascii_lowercase().as_str() {
                "from" => {
                    froms += 1;
                    message.from = value;
                }
                "sender" if message.sender.is_some() => {
                    return Err(IngestError::invalid(
                        "raw",
                        format!("{at}: a second Sender header"),
                    ));
                }
                "sender" => message.sender = Some(value),
                "date" => message.has_date = true,
                "message-id" => message.has_message_id = true,
                "list-unsubscribe" => message.has_list_unsubscribe = true,
                "feedback-id" => message.has_feedback_id = true,
                "dkim-signature" => {
                    return Err(IngestError::invalid(
                        "raw",
                        format!(
                            "header {}: already DKIM-signed; ingest signs it",
                            number + 1
                        ),
                    ));
                }
                _ => {}
            }
        }
        if froms != 1 {
            return Err(IngestError::invalid(
                "raw",
                format!("needs exactly one From header, found {froms}"),
            ));
        }
        Ok(message)
    }

    /// The From header's value (unfolded).
    pub fn sender_value(&self) -> &str {
        &self.from
    }

    /// The Sender header's value (unfolded), if the message has one.
    pub fn sender_header(&self) -> Option<&str> {
        self.sender.as_deref()
    }

    /// Size after normalization.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// One recipient's copy: missing Date and Message-ID, and the extra
    /// headers the message does not carry yet, prepended.
    pub fn copy(&self, copy: Copy<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 512);
        let mut add = |name: &str, value: &str| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        if !self.has_date {
            add("Date", &Date::new(copy.now_unix).to_rfc822());
        }
        if !self.has_message_id {
            add(
                "Message-ID",
                &format!("<{}@{}>", copy.message_id, copy.from_domain),
            );
        }
        for (name, value) in &copy.extra {
            let present = match *name {
                "List-Unsubscribe" | "List-Unsubscribe-Post" => self.has_list_unsubscribe,
                "Feedback-ID" => self.has_feedback_id,
                _ => false,
            };
            if !present {
                add(name, value);
            }
        }
        out.extend_from_slice(&self.bytes);
        out
    }
}

/// Splits a header section into unfolded (name, value) fields.
fn fields(header: &[u8]) -> Result<Vec<(String, String)>, IngestError> {
    let text = String::from_utf8_lossy(header);
    let mut fields: Vec<(String, String)> = Vec::new();
    for (number, line) in text.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some(last) = fields.last_mut() else {
                return Err(IngestError::invalid("raw", "line 1 is a continuation line"));
            };
            last.1.push_str(line);
            continue;
        }
        let field_name = line.split_once(':').map(|(n, v)| (n, v.trim()));
        match field_name {
            Some((name, value))
                if !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b)) =>
            {
                fields.push((name.to_owned(), value.to_owned()));
            }
            _ => {
                return Err(IngestError::invalid(
                    "raw",
                    format!(
                        "line {} is not a header field (`Name: value`); separate headers \
                         from the body with an empty line",
                        number + 1
                    ),
                ));
            }
        }
    }
    Ok(fields)
}

/// Converts bare LF to CRLF.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50);
    let mut previous = 0u8;
    for &byte in raw {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RecipientInput;

    fn copy_of(message: &RawMessage) -> String {
        let r = RecipientInput::default();
        let bytes = message.copy(Copy {
            index: 0,
            recipient: &r,
            message_id: "01ID",
            from_domain: "acme.example",
            now_unix: 1_700_000_000,
            extra: vec![("Feedback-ID", "x:y:z:sluice".into())],
            tracking: None,
        });
        String::from_utf8(bytes).expect("utf8")
    }

    #[test]
    fn adds_date_and_message_id_when_missing() {
        let m = RawMessage::parse(b"From: a@acme.example\nSubject: hi\n\nbody\n").expect("ok");
        assert_eq!(m.sender_value(), "a@acme.example");
        let text = copy_of(&m);
        assert!(text.starts_with("Date: "), "{text}");
        assert!(
            text.contains("Message-ID: <01ID@acme.example>\r\n"),
            "{text}"
        );
        assert!(text.contains("Feedback-ID: x:y:z:sluice\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nbody\r\n"), "{text}");
    }

    #[test]
    fn keeps_existing_date_and_message_id() {
        let raw = b"From: a@acme.example\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
                    Message-ID: <x@y>\r\nFeedback-ID: mine\r\n\r\nbody\r\n";
        let text = copy_of(&RawMessage::parse(raw).expect("ok"));
        assert_eq!(text.matches("Date:").count(), 1, "{text}");
        assert_eq!(text.matches("Message-ID:").count(), 1, "{text}");
        assert_eq!(text.matches("Feedback-ID:").count(), 1, "{text}");
    }

    #[test]
    fn rejects_malformed_headers_and_missing_from() {
        let err = RawMessage::parse(b"just some text\r\n\r\n").expect_err("no header");
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = RawMessage::parse(b"Subject: x\r\n\r\nbody").expect_err("no from");
        assert!(err.to_string().contains("From"), "{err}");
        let err = RawMessage::parse(b"From: a@b.c\r\nFrom: d@e.f\r\n\r\n").expect_err("two");
        assert!(err.to_string().contains("found 2"), "{err}");
    }

    #[test]
    fn receiver_headers_are_refused_and_the_sender_header_kept_for_its_check() {
        for name in [
            "Authentication-Results",
            "ARC-Seal",
            "Received",
            "Return-Path",
        ] {
            let raw = format!("From: a@acme.example\r\n{name}: x\r\n\r\nbody");
            let err = RawMessage::parse(raw.as_bytes())
                .expect_err(name)
                .to_string();
            assert!(err.contains("header 2") && err.contains(name), "{err}");
        }
        let raw = b"From: a@acme.example\r\nSender: ops@acme.example\r\n\r\nbody";
        let m = RawMessage::parse(raw).expect("ok");
        assert_eq!(m.sender_header(), Some("ops@acme.example"));
        let two = b"From: a@acme.example\r\nSender: a@b.c\r\nSender: d@e.f\r\n\r\n";
        let err = RawMessage::parse(two).expect_err("two senders").to_string();
        assert!(err.contains("second Sender"), "{err}");
    }
}
