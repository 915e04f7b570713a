//! Checks a whole submission against the tenant and the limits before
//! anything is rendered, signed or published.

use std::collections::HashSet;

use crate::IngestError;
use crate::compose::Templates;
use crate::config::LimitsConfig;
use crate::model::{Content, Submission};
use crate::raw::RawMessage;
use crate::tenant::Tenant;
use crate::validate;

/// Longest idempotency key, campaign, tag or pool name accepted.
const MAX_LABEL: usize = 256;

/// A submission that passed every check.
pub struct Checked {
    pub pool: String,
    pub from_domain: String,
    pub body: Body,
    /// Rough size of one recipient's copy, for the in-flight budget.
    pub size_hint: usize,
}

/// The prepared content.
pub enum Body {
    Template { from: String, templates: Templates },
    Raw(RawMessage),
}

/// Tracking asked for only where it can be done: the tenant allows it,
/// this node has a `tracking.base_url`, and the content is a template with
/// an HTML part (raw messages are sent as submitted).
pub fn tracking(sub: &Submission, tenant: &Tenant, node_tracks: bool) -> Result<(), IngestError> {
    if !sub.tracking.any() {
        return Ok(());
    }
    let refuse = |reason: String| Err(IngestError::invalid("tracking", reason));
    if !tenant.tracking() {
        return refuse(format!(
            "tenant {} has not enabled tracking (control: the tenant's `tracking` setting)",
            tenant.name()
        ));
    }
    if !node_tracks {
        return refuse("this ingest node has no tracking.base_url".into());
    }
    match &sub.content {
        Content::Template { html, .. } if !html.is_empty() => Ok(()),
        Content::Template { .. } => refuse("needs a template with an html part".into()),
        Content::Raw(_) => {
            refuse("applies to templated messages; raw messages are sent as submitted".into())
        }
    }
}

/// Runs every check; the first failure names its field.
pub fn submission(
    sub: &Submission,
    tenant: &Tenant,
    pools: &HashSet<String>,
    limits: &LimitsConfig,
) -> Result<Checked, IngestError> {
    recipients(sub, limits)?;
    labels(sub)?;
    schedule(sub.send_at, std::time::SystemTime::now())?;
    let pool = pool(sub, tenant, pools)?;
    if !(0..=3).contains(&sub.priority) {
        return Err(IngestError::invalid(
            "priority",
            "must be 0 to 3 (sluice.v1.Priority)",
        ));
    }
    let from_domain = if sub.from.is_empty() {
        String::new()
    } else {
        sender(tenant, "from", &sub.from)?
    };
    let (body, from_domain, size_hint) = match &sub.content {
        Content::Template {
            subject,
            text,
            html,
        } => {
            if from_domain.is_empty() {
                return Err(IngestError::invalid(
                    "from",
                    "is required for templated messages",
                ));
            }
            for (name, value) in &sub.headers {
                validate::extra_header(name, value)?;
            }
            let size = subject.len() + text.len() + html.len();
            size_limit("template", size, limits.max_message_bytes)?;
            let templates = Templates::compile(subject, text, html, limits.max_message_bytes)?;
            let from = sub.from.clone();
            (Body::Template { from, templates }, from_domain, size + 2048)
        }
        Content::Raw(bytes) => {
            if !sub.headers.is_empty() {
                return Err(IngestError::invalid(
                    "headers",
                    "only for templated messages",
                ));
            }
            size_limit("raw", bytes.len(), limits.max_message_bytes)?;
            let raw = RawMessage::parse(bytes)?;
            let header_domain = sender(tenant, "raw (From header)", raw.sender_value())?;
            if let Some(value) = raw.sender_header() {
                sender(tenant, "raw (Sender header)", value)?;
            }
            let size = raw.size() + 2048;
            (Body::Raw(raw), header_domain, size)
        }
    };
    Ok(Checked {
        pool,
        from_domain,
        body,
        size_hint,
    })
}

fn recipients(sub: &Submission, limits: &LimitsConfig) -> Result<(), IngestError> {
    if sub.recipients.is_empty() {
        return Err(IngestError::invalid(
            "recipients",
            "at least one recipient is required",
        ));
    }
    if sub.recipients.len() > limits.max_recipients {
        return Err(IngestError::invalid(
            "recipients",
            format!(
                "{} recipients, at most {} per message",
                sub.recipients.len(),
                limits.max_recipients
            ),
        ));
    }
    for (i, recipient) in sub.recipients.iter().enumerate() {
        validate::address(&format!("recipients[{i}].address"), &recipient.address)?;
        validate::no_line_breaks(&format!("recipients[{i}].name"), &recipient.name)?;
    }
    Ok(())
}

fn labels(sub: &Submission) -> Result<(), IngestError> {
    if !sub.list.is_empty() && !sluice_links::unsubscribe::valid_list(&sub.list) {
        return Err(IngestError::invalid(
            "list",
            "must be 1 to 64 of A-Z, a-z, 0-9, `.`, `_` and `-`",
        ));
    }
    let mut fields = vec![
        ("idempotency_key".to_owned(), sub.idempotency_key.as_str()),
        ("campaign".to_owned(), sub.campaign.as_str()),
        ("pool".to_owned(), sub.pool.as_str()),
    ];
    for (key, value) in &sub.tags {
        fields.push(("tags".to_owned(), key.as_str()));
        fields.push((format!("tags.{key}"), value.as_str()));
    }
    for (field, value) in fields {
        validate::no_line_breaks(&field, value)?;
        if value.len() > MAX_LABEL {
            return Err(IngestError::invalid(field, "longer than 256 bytes"));
        }
    }
    Ok(())
}

fn pool(sub: &Submission, tenant: &Tenant, pools: &HashSet<String>) -> Result<String, IngestError> {
    let pool = if sub.pool.is_empty() {
        tenant.default_pool()
    } else {
        &sub.pool
    };
    if pools.contains(pool) {
        return Ok(pool.to_owned());
    }
    let mut known: Vec<_> = pools.iter().map(String::as_str).collect();
    known.sort_unstable();
    Err(IngestError::invalid(
        "pool",
        format!("unknown pool {pool:?}; known pools: {}", known.join(", ")),
    ))
}

/// Checks a From value and that its domain belongs to the tenant.
fn sender(tenant: &Tenant, field: &str, from: &str) -> Result<String, IngestError> {
    let mailbox = crate::mailbox::one(field, from)?;
    let domain = validate::address(field, &mailbox.address)?;
    tenant.check_domain(field, domain)?;
    Ok(domain.to_ascii_lowercase())
}

fn size_limit(field: &str, actual: usize, limit: usize) -> Result<(), IngestError> {
    if actual > limit {
        return Err(IngestError::TooLarge {
            field: field.into(),
            limit,
            actual,
        });
    }
    Ok(())
}

/// Checks a rendered copy against the size limit.
pub fn rendered_size(index: usize, actual: usize, limit: usize) -> Result<(), IngestError> {
    size_limit(
        &format!("recipients[{index}] (rendered message)"),
        actual,
        limit,
    )
}

/// How far ahead a message may be scheduled.
pub const MAX_SCHEDULE: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// `send_at`, when given, is at most [`MAX_SCHEDULE`] after `now` (a time in
/// the past means now).
fn schedule(
    send_at: Option<std::time::SystemTime>,
    now: std::time::SystemTime,
) -> Result<(), IngestError> {
    let Some(at) = send_at else { return Ok(()) };
    let latest = now + MAX_SCHEDULE;
    if at > latest {
        return Err(IngestError::invalid(
            "send_at",
            "must be at most 30 days from now (schedule later mail later)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod schedule_tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn send_at_is_bounded_and_far_futures_are_refused_not_panicking() {
        let now = SystemTime::now();
        assert!(schedule(None, now).is_ok());
        assert!(schedule(Some(now - Duration::from_secs(60)), now).is_ok());
        assert!(schedule(Some(now + Duration::from_secs(29 * 86_400)), now).is_ok());
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(250_000_000_000);
        let err = schedule(Some(far), now).unwrap_err().to_string();
        assert!(err.contains("send_at"), "{err}");
    }
}
