//! The fate of each outcome: which event, and which delay tier for a retry.

use sluice_proto::v1::{BounceClass, Envelope, EventKind, SmtpReply};
use sluice_shaping::{Millis, RetryDecision, RetrySchedule, Span};

use super::{Dispatcher, fate_now};
use crate::config::SenderConfig;
use crate::deliver::Attempt;
use crate::fate::{self, AttemptInfo, Fate, synthetic, timestamp};
use crate::smtp::SmtpError;

/// The next hop of a message scheduled for later: the delay tier whose
/// delay fits the time left (the longest not beyond it, else the shortest),
/// held there for that delay or the time left, whichever is shorter. No
/// event: nothing was attempted.
pub(super) fn scheduled(
    cfg: &SenderConfig,
    retry: &RetrySchedule,
    envelope: &Envelope,
    now: Millis,
) -> Fate {
    let due = fate::millis(&envelope.not_before).unwrap_or(now);
    let left = Span(due.0.saturating_sub(now.0));
    let tier = retry.tier_for(left);
    let mut next = envelope.clone();
    fate::hold_in_tier(&mut next, tier.delay, now);
    Fate {
        notice: None,
        requeue: Some((cfg.delay_topic(&tier.name), next)),
        event: None,
    }
}

pub(super) fn final_fate(
    envelope: &Envelope,
    kind: EventKind,
    reply: Option<SmtpReply>,
    class: BounceClass,
    info: &AttemptInfo,
) -> Fate {
    Fate {
        notice: None,
        requeue: None,
        event: Some(fate::event(envelope, kind, reply, class, info, fate_now())),
    }
}

pub(super) fn delivered(
    envelope: &Envelope,
    reply: SmtpReply,
    info: &AttemptInfo,
    now: Millis,
) -> Fate {
    Fate {
        notice: None,
        requeue: None,
        event: Some(fate::event(
            envelope,
            EventKind::Delivered,
            Some(reply),
            BounceClass::Unspecified,
            info,
            now,
        )),
    }
}

pub(super) fn bounced(
    envelope: &Envelope,
    reply: SmtpReply,
    class: Option<BounceClass>,
    info: &AttemptInfo,
    now: Millis,
) -> Fate {
    let class = class.unwrap_or(BounceClass::OtherPermanent);
    Fate {
        notice: None,
        requeue: None,
        event: Some(fate::event(
            envelope,
            EventKind::Bounced,
            Some(reply),
            class,
            info,
            now,
        )),
    }
}

pub(super) fn expired(envelope: &Envelope, now: Millis) -> Fate {
    let reply = envelope
        .previous_replies
        .last()
        .cloned()
        .unwrap_or_else(|| synthetic(451, "4.4.7", "message expired before it could be delivered"));
    Fate {
        notice: None,
        requeue: None,
        event: Some(fate::event(
            envelope,
            EventKind::Expired,
            Some(reply),
            BounceClass::OtherTemporary,
            &AttemptInfo::default(),
            now,
        )),
    }
}

/// `envelope` marked as parked now for its full site queue `site`: a change
/// of the site's limits releases it early ([`crate::wake`]).
pub(super) fn parked(mut envelope: Envelope, site: &str, now: Millis) -> Envelope {
    envelope.site = site.to_owned();
    envelope.parked_at = Some(timestamp(now));
    envelope
}

/// A message whose site queue is full: to the delay tier that fits `delay`
/// (see [`super::parking`]), with no event (it is not an outcome) and its
/// attempt count unchanged.
pub(super) fn overflow(
    cfg: &SenderConfig,
    retry: &RetrySchedule,
    envelope: &Envelope,
    now: Millis,
    delay: Span,
) -> Fate {
    let tier = retry.tier_for(delay);
    let mut envelope = envelope.clone();
    envelope.not_before = Some(timestamp(now.after(delay)));
    fate::hold_in_tier(&mut envelope, tier.delay, now);
    Fate {
        notice: None,
        requeue: Some((cfg.delay_topic(&tier.name), envelope)),
        event: None,
    }
}

/// A message of a tenant paused by reputation: back to the first delay tier
/// (attempt unchanged, no SMTP attempt made), with a `deferred` event that
/// says why.
pub(super) fn tenant_paused(
    cfg: &SenderConfig,
    retry: &RetrySchedule,
    envelope: &Envelope,
    now: Millis,
) -> Fate {
    let mut fate = overflow(cfg, retry, envelope, now, cfg.queues.overflow_delay);
    if let Some((_, waiting)) = &mut fate.requeue {
        // Waiting for its tenant, not its site: a site's change does not wake it.
        waiting.parked_at = None;
    }
    let reply = synthetic(
        451,
        "4.7.1",
        format!(
            "tenant `{}` is paused by reputation (bounce or complaint rate); its mail waits until the pause is lifted",
            envelope.tenant
        ),
    );
    let mut event = fate::event(
        envelope,
        EventKind::Deferred,
        Some(reply),
        BounceClass::Reputation,
        &AttemptInfo::default(),
        now,
    );
    event.next_attempt_at = fate.requeue.as_ref().and_then(|(_, e)| e.not_before);
    fate.event = Some(event);
    fate
}

pub(super) fn is_expired(envelope: &Envelope, now: Millis) -> bool {
    fate::millis(&envelope.expires_at).is_some_and(|t| t <= now)
}

/// The reply as the engine reads it, and as the event carries it.
pub(super) fn replies(attempt: &Attempt) -> (sluice_shaping::Reply, SmtpReply) {
    let wire = match attempt {
        Attempt::Replied { reply } => SmtpReply {
            code: u32::from(reply.code),
            enhanced_code: reply.enhanced.clone().unwrap_or_default(),
            text: reply.text.clone(),
            synthetic: false,
        },
        Attempt::Failed { error } => failure_reply(error),
    };
    let line = format!(
        "{} {} {}",
        wire.code,
        wire.enhanced_code,
        wire.text.replace('\n', " ")
    );
    let reply = sluice_shaping::Reply::parse(&line).unwrap_or(sluice_shaping::Reply {
        code: wire.code as u16,
        enhanced: None,
        text: wire.text.clone(),
    });
    (reply, wire)
}

/// A local failure as a reply: all are temporary (RFC 3463 4.4.x network, 4.7.x TLS).
fn failure_reply(error: &SmtpError) -> SmtpReply {
    match error {
        SmtpError::TlsRequired | SmtpError::Tls(_) => synthetic(421, "4.7.10", error.to_string()),
        SmtpError::Timeout(..) => synthetic(421, "4.4.2", error.to_string()),
        SmtpError::Protocol { .. } => synthetic(421, "4.5.0", error.to_string()),
        SmtpError::Io(_) | SmtpError::Closed => synthetic(421, "4.4.1", error.to_string()),
    }
}

impl Dispatcher {
    /// Deferred: re-queue on the delay tier the retry schedule picks, or
    /// expire when the message is too old.
    pub(super) fn retry_fate(
        &mut self,
        envelope: &Envelope,
        reply: SmtpReply,
        info: AttemptInfo,
        at_least: Span,
    ) -> Fate {
        let now = fate_now();
        let first = fate::millis(&envelope.accepted_at).unwrap_or(now);
        let random = self.next_random();
        let decision = self
            .engine
            .retry()
            .next(now, first, envelope.attempt + 1, random, at_least);
        let expired_by_deadline = fate::millis(&envelope.expires_at);
        match decision {
            RetryDecision::RetryAt { at, .. } if expired_by_deadline.is_some_and(|e| at >= e) => {
                self.expire_with(envelope, reply, now)
            }
            RetryDecision::RetryAt { at, tier } => {
                let mut next = envelope.clone();
                next.attempt += 1;
                next.not_before = Some(timestamp(at));
                next.parked_at = None;
                fate::hold_in_tier(&mut next, tier.delay, now);
                next.previous_replies.push(reply.clone());
                if !info.source_ip.is_empty() {
                    next.last_source_ip = info.source_ip.clone();
                }
                let mut event = fate::event(
                    envelope,
                    EventKind::Deferred,
                    Some(reply),
                    BounceClass::OtherTemporary,
                    &info,
                    now,
                );
                event.next_attempt_at = Some(timestamp(at));
                Fate {
                    notice: None,
                    requeue: Some((self.cfg.delay_topic(&tier.name), next)),
                    event: Some(event),
                }
            }
            RetryDecision::Expire => self.expire_with(envelope, reply, now),
        }
    }

    /// `fate` with the delivery status notification its envelope asks for
    /// when the fate is a final failure ([`crate::dsn`]).
    pub(super) fn noticed(&self, envelope: &Envelope, mut fate: Fate) -> Fate {
        if let (Some(event), false) = (&fate.event, envelope.dsn_to.is_empty()) {
            let (topic, reporter) = (self.cfg.outbound_topic(), &self.cfg.smtp.ehlo_name);
            fate.notice = crate::dsn::notice(envelope, event, topic, reporter, fate_now());
        }
        fate
    }

    fn expire_with(&self, envelope: &Envelope, reply: SmtpReply, now: Millis) -> Fate {
        let mut envelope = envelope.clone();
        envelope.previous_replies.push(reply);
        expired(&envelope, now)
    }

    pub(super) fn count_fate(&self, fate: &Fate) {
        let Some(event) = &fate.event else {
            return;
        };
        tracing::debug!(
            message_id = %event.message_id,
            kind = ?event.kind(),
            reply = ?event.reply.as_ref().map(|r| (r.code, r.enhanced_code.as_str(), r.text.as_str())),
            source_ip = %event.source_ip,
            "outcome"
        );
        let kind = match event.kind() {
            EventKind::Delivered => "delivered",
            EventKind::Deferred => "deferred",
            EventKind::Bounced => "bounced",
            EventKind::Expired => "expired",
            _ => "other",
        };
        self.metrics
            .outcomes
            .get_or_create(&crate::metrics::OutcomeLabels {
                kind: kind.into(),
                site: crate::metrics::site_label(&event.site),
                pool: self.cfg.pool.clone(),
                source_ip: event.source_ip.clone(),
            })
            .inc();
        let mut stats = self.stats.lock().expect("stats lock");
        match event.kind() {
            EventKind::Delivered => stats.delivered += 1,
            EventKind::Deferred => stats.deferred += 1,
            EventKind::Bounced => stats.bounced += 1,
            EventKind::Expired => stats.expired += 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod scheduled_tests {
    use super::*;
    use sluice_shaping::RetryConfig;

    fn hop(left: Span) -> (String, Millis) {
        let file = "node = \"s1\"\npool = \"shared\"\n[control]\naddr = \"127.0.0.1:7090\"\n";
        let cfg = SenderConfig::from_toml(file).expect("config");
        let retry = RetrySchedule::new(&RetryConfig::default()).expect("default tiers");
        let now = Millis(1_000_000_000);
        let envelope = Envelope {
            not_before: Some(timestamp(Millis(now.0 + left.0))),
            ..Default::default()
        };
        let fate = scheduled(&cfg, &retry, &envelope, now);
        assert!(fate.event.is_none(), "nothing was attempted");
        let (topic, next) = fate.requeue.expect("a hop");
        assert_eq!(next.not_before, envelope.not_before, "the due time stays");
        let hold = fate::millis(&next.hold_until).expect("held");
        (topic, Millis(hold.0 - now.0))
    }

    #[test]
    fn an_overflow_is_held_no_longer_than_its_tier_delay() {
        let file = "node = \"s1\"\npool = \"shared\"\n[control]\naddr = \"127.0.0.1:7090\"\n";
        let cfg = SenderConfig::from_toml(file).expect("config");
        let retry = RetrySchedule::new(&RetryConfig::default()).expect("default tiers");
        let now = Millis(1_000_000_000);
        let envelope = Envelope {
            // A stale hold from an earlier hop must not survive the re-queue.
            hold_until: Some(timestamp(Millis(now.0 - 5_000))),
            ..Default::default()
        };
        for (delay, tier) in [(cfg.queues.overflow_delay, "1m"), (Span::hours(1), "1h")] {
            let fate = overflow(&cfg, &retry, &envelope, now, delay);
            let (topic, next) = fate.requeue.expect("re-queued");
            assert_eq!(topic, format!("sluice.outbound.shared.delay-{tier}"));
            let hold = fate::millis(&next.hold_until).expect("held");
            let due = fate::millis(&next.not_before).expect("due");
            assert_eq!(due, now.after(delay));
            assert!(hold > now && hold <= due, "hold {hold:?}, due {due:?}");
            assert!(hold.0 - now.0 <= retry.tier_for(delay).delay.0);
        }
    }

    #[test]
    fn a_hop_takes_the_longest_tier_within_the_wait_and_never_passes_the_due_time() {
        let tier = |t: &str| format!("sluice.outbound.shared.delay-{t}");
        assert_eq!(hop(Span::days(2)), (tier("6h"), Millis(Span::hours(6).0)));
        assert_eq!(hop(Span::mins(90)), (tier("1h"), Millis(Span::hours(1).0)));
        assert_eq!(hop(Span::mins(10)), (tier("10m"), Millis(Span::mins(10).0)));
        // Shorter than every tier: held in the shortest, only until due.
        assert_eq!(hop(Span::secs(20)), (tier("1m"), Millis(20_000)));
    }
}
