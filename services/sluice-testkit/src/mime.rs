//! Reading a delivery status notification (RFC 3464) as a receiver would,
//! with mail-parser: the checks every report must pass, and its parts.

use mail_parser::{MessageParser, MimeHeaders};

/// The parts of a checked report, as text.
pub struct DeliveryReport {
    /// The `message/delivery-status` part.
    pub status: String,
    /// The `text/rfc822-headers` part (the failed message's headers).
    pub headers: String,
}

/// Parses `raw` and checks that it is a `multipart/report;
/// report-type=delivery-status` marked `Auto-Submitted: auto-replied`, with
/// a delivery status and the failed message's headers; panics naming what
/// is missing, with the whole report.
pub fn delivery_report(raw: &[u8]) -> DeliveryReport {
    let text = String::from_utf8_lossy(raw);
    let parsed = MessageParser::default()
        .parse(raw)
        .unwrap_or_else(|| panic!("the report does not parse: {text}"));
    let top = parsed.content_type().expect("a content type");
    let kind = (top.ctype(), top.subtype());
    assert_eq!(kind, ("multipart", Some("report")), "{text}");
    assert_eq!(
        top.attribute("report-type"),
        Some("delivery-status"),
        "{text}"
    );
    assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
    let part = |subtype: &str| {
        parsed
            .parts
            .iter()
            .find(|p| p.content_type().and_then(|c| c.subtype()) == Some(subtype))
            .map(|p| String::from_utf8_lossy(p.contents()).into_owned())
            .unwrap_or_else(|| panic!("no {subtype} part in {text}"))
    };
    DeliveryReport {
        status: part("delivery-status"),
        headers: part("rfc822-headers"),
    }
}

/// The decoded HTML part of `raw`, as a mail client would show it; panics
/// when the message has none.
pub fn html_part(raw: &[u8]) -> String {
    let parsed = MessageParser::default()
        .parse(raw)
        .unwrap_or_else(|| panic!("not a message: {}", String::from_utf8_lossy(raw)));
    parsed
        .body_html(0)
        .unwrap_or_else(|| panic!("no HTML part: {}", String::from_utf8_lossy(raw)))
        .into_owned()
}

/// Every URL in `html` that starts with `prefix`, up to its closing quote,
/// in order.
pub fn urls_under(html: &str, prefix: &str) -> Vec<String> {
    html.split(prefix)
        .skip(1)
        .map(|rest| format!("{prefix}{}", rest.split('"').next().unwrap_or_default()))
        .collect()
}
