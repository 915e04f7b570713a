//! Outcomes of delivery attempts: replies drive the adaptive backoff.

use super::{Engine, PathId};
use crate::classify::Classification;
use crate::reply::{Reply, RuleAction};
use crate::time::{Millis, Span};

/// What happens to the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted by the receiver.
    Delivered,
    /// Retry later, not sooner than `at_least` from now (see [`crate::RetrySchedule::next`]).
    Retry {
        /// Minimum delay a rule asked for (zero when none).
        at_least: Span,
    },
    /// Give up: bounce.
    Bounce,
}

/// What the reply did to the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathEffect {
    /// Nothing.
    None,
    /// Sustained success raised the path's rate to this permille of its ceiling.
    Raised(u16),
    /// The path's rate was cut to this permille of its ceiling.
    Slowed(u16),
    /// The path is suspended until this time (and slowed).
    PathSuspended(Millis),
    /// Every path of the source IP is suspended until this time (and this path slowed).
    IpSuspended(Millis),
}

/// The engine's answer to one reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// What to do with the message.
    pub verdict: Verdict,
    /// Bounce class of a failure reply (`None` for success).
    pub classification: Option<Classification>,
    /// What happened to the path.
    pub effect: PathEffect,
    /// Name of the reply rule that matched, if any.
    pub rule: Option<String>,
}

impl Engine {
    /// Records the final reply to one message sent on `path` and returns what to do.
    pub fn on_reply(&mut self, now: Millis, path: PathId, reply: &Reply) -> Action {
        if reply.is_success() {
            return self.on_success(now, path);
        }
        let p = &self.paths[path.0 as usize];
        let provider = self.sites[p.site as usize].provider.as_deref();
        let classified = self.classifier.classify(reply);
        let rule = self.replies.find(provider, reply).cloned();
        let kind = match &rule {
            Some(r) => r.action,
            None if classified.permanent => RuleAction::Bounce,
            None => RuleAction::Retry,
        };
        let duration = rule
            .as_ref()
            .and_then(|r| r.duration)
            .unwrap_or(self.cfg.backoff.default_suspension);
        let effect = self.apply(now, path, kind, duration);
        let verdict = match kind {
            RuleAction::Bounce => Verdict::Bounce,
            _ => Verdict::Retry {
                at_least: rule
                    .as_ref()
                    .and_then(|r| r.retry_after)
                    .unwrap_or_default(),
            },
        };
        let class = rule
            .as_ref()
            .and_then(|r| r.class)
            .unwrap_or(classified.class);
        Action {
            verdict,
            classification: Some(Classification::new(class, classified.permanent)),
            effect,
            rule: rule.map(|r| r.name),
        }
    }

    fn on_success(&mut self, now: Millis, path: PathId) -> Action {
        let aimd = &mut self.paths[path.0 as usize].state.aimd;
        let effect = if aimd.success(now, &self.cfg.backoff) {
            PathEffect::Raised(aimd.permille())
        } else {
            PathEffect::None
        };
        Action {
            verdict: Verdict::Delivered,
            classification: None,
            effect,
            rule: None,
        }
    }

    fn apply(&mut self, now: Millis, path: PathId, kind: RuleAction, duration: Span) -> PathEffect {
        let until = now.after(duration);
        let p = &mut self.paths[path.0 as usize];
        match kind {
            RuleAction::Retry | RuleAction::Bounce => return PathEffect::None,
            RuleAction::Slow => {}
            RuleAction::SuspendPath => p.state.suspended_until = p.state.suspended_until.max(until),
            RuleAction::SuspendIp => {
                let ip = &mut self.ips[p.ip as usize].state;
                ip.suspended_until = ip.suspended_until.max(until);
            }
        }
        p.state.aimd.decrease(now, &self.cfg.backoff);
        match kind {
            RuleAction::SuspendPath => PathEffect::PathSuspended(p.state.suspended_until),
            RuleAction::SuspendIp => {
                PathEffect::IpSuspended(self.ips[p.ip as usize].state.suspended_until)
            }
            _ => PathEffect::Slowed(p.state.aimd.permille()),
        }
    }
}
