//! The fate of each outcome: which event, and which delay tier for a retry.

use sluice_proto::v1::{BounceClass, Envelope, EventKind, SmtpReply};
use sluice_shaping::{Millis, RetryDecision, RetrySchedule, Span};

use super::{Dispatcher, fate_now};
use crate::config::SenderConfig;
use crate::deliver::Attempt;
use crate::fate::{self, AttemptInfo, Fate, synthetic, timestamp};
use crate::smtp::SmtpError;

pub(super) fn final_fate(
    envelope: &Envelope,
    kind: EventKind,
    reply: Option<SmtpReply>,
    class: BounceClass,
    info: &AttemptInfo,
) -> Fate {
    Fate {
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

/// A message whose site queue is full: back to the first delay tier, with no
/// event (it is not an outcome) and its attempt count unchanged.
pub(super) fn overflow(
    cfg: &SenderConfig,
    retry: &RetrySchedule,
    envelope: &Envelope,
    now: Millis,
) -> Fate {
    let delay = cfg.queues.overflow_delay;
    let tier = retry.tier_for(delay);
    let mut envelope = envelope.clone();
    envelope.not_before = Some(timestamp(now.after(delay)));
    Fate {
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
    let mut fate = overflow(cfg, retry, envelope, now);
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
                    requeue: Some((self.cfg.delay_topic(&tier.name), next)),
                    event: Some(event),
                }
            }
            RetryDecision::Expire => self.expire_with(envelope, reply, now),
        }
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
                site: event.site.clone(),
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
