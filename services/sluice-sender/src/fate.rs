//! Turning an attempt's result into its durable fate: the events to publish
//! and, for a retry or an overflow, the envelope to re-queue on a delay tier.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;
use sluice_proto::v1::{BounceClass, Envelope, Event, EventKind, SmtpReply, Timings};
use sluice_shaping::Millis;

/// Where and how an attempt was made (for the event).
#[derive(Debug, Clone, Default)]
pub struct AttemptInfo {
    pub source_ip: String,
    pub site: String,
    pub mx_host: String,
    pub mx_address: String,
    pub queued: Duration,
    pub connect: Duration,
    pub transaction: Duration,
    /// The sender node that made the attempt.
    pub node: String,
    /// Epoch of the node's lease on `source_ip` when the attempt started.
    pub lease_epoch: u64,
}

/// Everything that must be durable before the record's offset may be committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Fate {
    /// Envelope to publish first (retry or overflow), with its topic.
    pub requeue: Option<(String, Envelope)>,
    /// Event to publish (none for an overflow, which is not an outcome).
    pub event: Option<Event>,
    /// A delivery status notification to the submitter, for a final
    /// failure of a message that asks for one ([`crate::dsn`]).
    pub notice: Option<crate::dsn::Notice>,
}

/// Milliseconds since the Unix epoch now (the sender's clock; the shaping
/// engine never reads one).
pub fn now() -> Millis {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Millis(ms)
}

pub fn timestamp(at: Millis) -> Timestamp {
    Timestamp {
        seconds: (at.0 / 1000) as i64,
        nanos: ((at.0 % 1000) * 1_000_000) as i32,
    }
}

pub fn millis(ts: &Option<Timestamp>) -> Option<Millis> {
    ts.as_ref()
        .filter(|t| t.seconds > 0 || t.nanos > 0)
        .map(|t| Millis(t.seconds.max(0) as u64 * 1000 + (t.nanos.max(0) as u64) / 1_000_000))
}

/// Readies `envelope` for a delay tier of `tier_delay`: held there until
/// now plus the tier's delay, or until due (`not_before`) if sooner. A
/// tier's records are then held in the order they were written, so the
/// consumer may hold a tier partition at its first record still held
/// without keeping due records behind it waiting longer than one tier
/// delay; a record that comes out before it is due hops on by the time
/// left. Every re-queue goes through this (retry, overflow, schedule).
pub fn hold_in_tier(envelope: &mut Envelope, tier_delay: sluice_shaping::Span, now: Millis) {
    let due = millis(&envelope.not_before).unwrap_or(now);
    let left = due.0.saturating_sub(now.0);
    envelope.hold_until = Some(timestamp(Millis(now.0 + tier_delay.0.min(left))));
}

/// Builds the event of one outcome.
pub fn event(
    envelope: &Envelope,
    kind: EventKind,
    reply: Option<SmtpReply>,
    class: BounceClass,
    info: &AttemptInfo,
    at: Millis,
) -> Event {
    Event {
        event_id: ulid::Ulid::new().to_string(),
        kind: kind.into(),
        message_id: envelope.message_id.clone(),
        tenant: envelope.tenant.clone(),
        pool: envelope.pool.clone(),
        campaign: envelope.campaign.clone(),
        recipient: envelope.recipient.clone(),
        attempt: envelope.attempt,
        at: Some(timestamp(at)),
        reply,
        bounce_class: class.into(),
        source_ip: info.source_ip.clone(),
        site: info.site.clone(),
        mx_host: info.mx_host.clone(),
        mx_address: info.mx_address.clone(),
        timings: Some(Timings {
            queued: Some(duration(info.queued)),
            connect: Some(duration(info.connect)),
            transaction: Some(duration(info.transaction)),
        }),
        next_attempt_at: None,
        tags: envelope.tags.clone(),
        node: info.node.clone(),
        lease_epoch: info.lease_epoch,
        engagement: None,
        list: String::new(),
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// A reply Sluice made up for a local failure (no server said it).
pub fn synthetic(code: u32, enhanced: &str, text: impl Into<String>) -> SmtpReply {
    SmtpReply {
        code,
        enhanced_code: enhanced.into(),
        text: text.into(),
        synthetic: true,
    }
}

/// The recipient's domain, lower-cased; `None` when the address has no `@`.
pub fn recipient_domain(recipient: &str) -> Option<String> {
    let (local, domain) = recipient.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(domain.trim_end_matches('.').to_lowercase())
}

/// Maps the engine's bounce class to the wire enum.
pub fn wire_class(class: sluice_shaping::BounceClass) -> BounceClass {
    use sluice_shaping::BounceClass as S;
    match class {
        S::BadMailbox => BounceClass::BadMailbox,
        S::BadDomain => BounceClass::BadDomain,
        S::MailboxFull => BounceClass::MailboxFull,
        S::PolicyBlock => BounceClass::Policy,
        S::Reputation => BounceClass::Reputation,
        S::RateLimit => BounceClass::RateLimit,
        S::Authentication => BounceClass::Authentication,
        S::TlsRequired => BounceClass::TlsRequired,
        S::Content => BounceClass::Content,
        S::OtherTemporary => BounceClass::OtherTemporary,
        S::OtherPermanent => BounceClass::OtherPermanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_domain_is_lowercased_and_requires_both_parts() {
        assert_eq!(
            recipient_domain("Bob@Example.COM").as_deref(),
            Some("example.com")
        );
        assert_eq!(recipient_domain("a@b@c.test").as_deref(), Some("c.test"));
        assert_eq!(recipient_domain("nobody"), None);
        assert_eq!(recipient_domain("@x.test"), None);
        assert_eq!(recipient_domain("x@"), None);
    }

    #[test]
    fn timestamps_round_trip_through_millis() {
        let at = Millis(1_764_000_123_456);
        assert_eq!(millis(&Some(timestamp(at))), Some(at));
        assert_eq!(millis(&None), None);
        assert_eq!(
            millis(&Some(Timestamp::default())),
            None,
            "zero means unset"
        );
    }

    #[test]
    fn a_tier_holds_for_its_delay_or_until_due_whichever_is_sooner() {
        let now = Millis(1_000_000);
        let mut retry = Envelope {
            not_before: Some(timestamp(Millis(now.0 + 600_000))),
            ..Default::default()
        };
        hold_in_tier(&mut retry, sluice_shaping::Span::mins(1), now);
        assert_eq!(millis(&retry.hold_until), Some(Millis(now.0 + 60_000)));
        let mut soon = Envelope {
            not_before: Some(timestamp(Millis(now.0 + 20_000))),
            ..Default::default()
        };
        hold_in_tier(&mut soon, sluice_shaping::Span::mins(1), now);
        assert_eq!(millis(&soon.hold_until), Some(Millis(now.0 + 20_000)));
    }
}
