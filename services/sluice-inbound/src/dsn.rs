//! What a message that arrived at a VERP address says: a delivery status
//! notification (RFC 3464, `multipart/report; report-type=delivery-status`),
//! a bounce in a provider's own words, an automatic reply, or nothing we
//! read. Pure: bytes in, findings out.

use std::str::FromStr;

use mail_parser::{MessageParser, MimeHeaders};
use sluice_shaping::reply::EnhancedCode;

/// One recipient's status in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `Final-Recipient` (or `Original-Recipient`); empty when the report
    /// names none (a provider's own bounce format).
    pub recipient: String,
    /// `Action: failed` (permanent) or `delayed` (still trying).
    pub failed: bool,
    pub status: EnhancedCode,
    /// `Diagnostic-Code` without its type (`smtp; `), or the line the status
    /// was found on.
    pub diagnostic: String,
}

/// What the message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Per-recipient statuses of a bounce (failed or delayed only).
    Bounce(Vec<Status>),
    /// An automatic reply (out of office, vacation, challenge): not a bounce.
    AutoReply,
    /// Nothing this role acts on.
    Unrecognised,
}

/// Reads a message that arrived at a VERP address.
pub fn read(message: &[u8]) -> Finding {
    let Some(parsed) = MessageParser::default().parse(message) else {
        return Finding::Unrecognised;
    };
    let report = parsed.parts.iter().find(|part| {
        part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("delivery-status"))
        })
    });
    if let Some(part) = report {
        return Finding::Bounce(statuses(&String::from_utf8_lossy(part.contents())));
    }
    if is_auto_reply(&parsed) {
        return Finding::AutoReply;
    }
    match provider_bounce(&parsed) {
        Some(status) => Finding::Bounce(vec![status]),
        None => Finding::Unrecognised,
    }
}

/// The per-recipient groups of a `message/delivery-status` body: groups of
/// fields separated by blank lines, the first about the message.
fn statuses(body: &str) -> Vec<Status> {
    let normalised = body.replace("\r\n", "\n");
    normalised
        .split("\n\n")
        .filter_map(|group| recipient_status(&fields(group)))
        .collect()
}

/// `Name: value` fields of a group, names lowercase, folded lines joined.
pub(crate) fn fields(group: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in group.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    out
}

fn recipient_status(fields: &[(String, String)]) -> Option<Status> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let action = get("action")?.to_ascii_lowercase();
    let failed = match action.split_whitespace().next()? {
        "failed" => true,
        "delayed" => false,
        _ => return None,
    };
    let status = EnhancedCode::from_str(get("status")?.split_whitespace().next()?).ok()?;
    let recipient = get("final-recipient")
        .or_else(|| get("original-recipient"))
        .map(typed_value)
        .unwrap_or_default();
    let diagnostic = get("diagnostic-code").map(typed_value).unwrap_or_default();
    Some(Status {
        recipient: recipient.trim_matches(['<', '>']).to_owned(),
        failed,
        status,
        diagnostic,
    })
}

/// `rfc822; bob@example.com` → `bob@example.com`.
fn typed_value(value: &str) -> String {
    value
        .split_once(';')
        .map_or(value, |(_, v)| v)
        .trim()
        .to_owned()
}

/// RFC 3834's `Auto-Submitted` (anything but `no`) and the headers common
/// autoresponders set instead.
fn is_auto_reply(message: &mail_parser::Message<'_>) -> bool {
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let auto_submitted = header("Auto-Submitted").is_some_and(|v| !v.starts_with("no"));
    let flagged = header("X-Autoreply").is_some() || header("X-Autorespond").is_some();
    let precedence = header("Precedence").is_some_and(|v| v == "auto_reply");
    let subject = message.subject().unwrap_or_default().to_ascii_lowercase();
    let said = [
        "out of office",
        "automatic reply",
        "auto:",
        "vacation",
        "autoreply",
    ]
    .iter()
    .any(|p| subject.starts_with(p));
    auto_submitted || flagged || precedence || said
}

/// A bounce in a provider's own format (no `delivery-status` part): a
/// subject that says the mail failed and a permanent enhanced status code
/// in the text (docs/feedback.md lists the subjects).
fn provider_bounce(message: &mail_parser::Message<'_>) -> Option<Status> {
    let subject = message.subject().unwrap_or_default().to_ascii_lowercase();
    let bounce_subjects = [
        "undeliverable",
        "undelivered mail",
        "delivery status notification (failure)",
        "mail delivery failed",
        "delivery failure",
        "returned mail",
        "failure notice",
    ];
    if !bounce_subjects.iter().any(|s| subject.contains(s)) {
        return None;
    }
    let text = message.body_text(0)?;
    text.lines().find_map(|line| {
        let status = line
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .find_map(|word| permanent_code(word.trim_end_matches(['.', ',', ';'])))?;
        Some(Status {
            recipient: String::new(),
            failed: true,
            status,
            diagnostic: line.trim().to_owned(),
        })
    })
}

/// `5.x.y` as an enhanced code.
fn permanent_code(word: &str) -> Option<EnhancedCode> {
    let code = EnhancedCode::from_str(word).ok()?;
    (code.class == 5).then_some(code)
}

#[cfg(test)]
mod tests;
