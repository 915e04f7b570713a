//! Retry schedule (RFC 5321 §4.5.4.1) and delay tiers.

use serde::Deserialize;

use crate::error::ConfigError;
use crate::time::{Millis, Span};

/// When to retry deferred mail and when to give up.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Delay before the first retry. Default `5m`.
    pub first_delay: Span,
    /// Each further retry waits this many times longer than the previous one. Default 2.0.
    pub multiplier: f64,
    /// Longest delay between two attempts. Default `4h`.
    pub max_delay: Span,
    /// Give up this long after the first attempt. Default `5d` (RFC 5321 asks for 4–5 days).
    pub max_age: Span,
    /// Each delay moves randomly by up to this percent either way. Default 10.
    pub jitter_percent: u8,
    /// Delay tiers (the `delay-<tier>` topics), e.g. `["1m", "10m", "1h", "6h"]`.
    pub tiers: Vec<Span>,
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            first_delay: Span::mins(5),
            multiplier: 2.0,
            max_delay: Span::hours(4),
            max_age: Span::days(5),
            jitter_percent: 10,
            tiers: vec![
                Span::mins(1),
                Span::mins(10),
                Span::hours(1),
                Span::hours(6),
            ],
        }
    }
}

/// A delay tier: the name used in topic names and its delay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    /// `1m`, `10m`, `1h`, ...
    pub name: String,
    /// The tier's delay.
    pub delay: Span,
}

/// What to do with a deferred message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again at `at`; park it in `tier` meanwhile.
    RetryAt {
        /// When the next attempt is due.
        at: Millis,
        /// The delay tier for `at - now`.
        tier: Tier,
    },
    /// The message is too old: give up (an `expired` event and a bounce).
    Expire,
}

/// The compiled retry schedule.
#[derive(Clone, Debug)]
pub struct RetrySchedule {
    cfg: RetryConfig,
    tiers: Vec<Tier>,
}

impl RetrySchedule {
    /// Validates and compiles.
    pub fn new(cfg: &RetryConfig) -> Result<RetrySchedule, ConfigError> {
        if !(cfg.multiplier >= 1.0 && cfg.multiplier <= 100.0) {
            return Err(ConfigError::new(
                "retry.multiplier",
                "must be between 1.0 and 100.0",
            ));
        }
        if cfg.first_delay.0 == 0 || cfg.max_delay < cfg.first_delay {
            return Err(ConfigError::new(
                "retry.max_delay",
                "must be at least first_delay, which must be > 0",
            ));
        }
        if cfg.jitter_percent > 50 {
            return Err(ConfigError::new(
                "retry.jitter_percent",
                "must be at most 50",
            ));
        }
        let mut spans = cfg.tiers.clone();
        spans.sort();
        spans.dedup();
        if spans.is_empty() || spans[0].0 == 0 {
            return Err(ConfigError::new(
                "retry.tiers",
                "needs at least one tier, all > 0",
            ));
        }
        let tiers = spans
            .into_iter()
            .map(|d| Tier {
                name: d.to_string(),
                delay: d,
            })
            .collect();
        Ok(RetrySchedule {
            cfg: cfg.clone(),
            tiers,
        })
    }

    /// Base delay before retry number `attempt` (1 = first retry), without jitter.
    pub fn base_delay(&self, attempt: u32) -> Span {
        let exp = self
            .cfg
            .multiplier
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let ms = (self.cfg.first_delay.0 as f64 * exp).min(self.cfg.max_delay.0 as f64);
        Span(ms as u64)
    }

    /// Delay before retry `attempt`, moved by jitter derived from the caller's `random`.
    pub fn delay(&self, attempt: u32, random: u64) -> Span {
        let base = self.base_delay(attempt).0;
        let spread = base * u64::from(self.cfg.jitter_percent) / 100;
        let offset = random % (2 * spread + 1);
        Span((base + offset).saturating_sub(spread).max(1))
    }

    /// The decision after `attempt` failed attempts (1 after the first failure) of a message
    /// first tried at `first_attempt`. `at_least` is a minimum delay (e.g. greylisting).
    /// The last retry is placed at the expiry time; after it, the message expires.
    pub fn next(
        &self,
        now: Millis,
        first_attempt: Millis,
        attempt: u32,
        random: u64,
        at_least: Span,
    ) -> RetryDecision {
        let expires = first_attempt.after(self.cfg.max_age);
        if now >= expires {
            return RetryDecision::Expire;
        }
        let delay = self.delay(attempt, random).max(at_least);
        let at = now.after(delay).min(expires);
        RetryDecision::RetryAt {
            at,
            tier: self.tier_for(at.since(now)).clone(),
        }
    }

    /// The longest tier not longer than `delay` (the shortest tier for shorter delays). A
    /// message that comes out of its tier early is routed again by its remaining delay.
    pub fn tier_for(&self, delay: Span) -> &Tier {
        self.tiers
            .iter()
            .rev()
            .find(|t| t.delay <= delay)
            .unwrap_or(&self.tiers[0])
    }

    /// The configured tiers, shortest first.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{DAY, MINUTE};

    fn sched() -> RetrySchedule {
        RetrySchedule::new(&RetryConfig::default()).unwrap()
    }

    #[test]
    fn exponential_and_capped() {
        let s = sched();
        assert_eq!(s.base_delay(1), Span::mins(5));
        assert_eq!(s.base_delay(2), Span::mins(10));
        assert_eq!(s.base_delay(4), Span::mins(40));
        assert_eq!(s.base_delay(20), Span::hours(4));
        assert_eq!(s.base_delay(u32::MAX), Span::hours(4));
    }

    #[test]
    fn jitter_stays_within_percent_and_is_deterministic() {
        let s = sched();
        for r in [0, 1, 7, 12345, u64::MAX] {
            let d = s.delay(1, r).0;
            assert!((270_000..=330_000).contains(&d), "{d}");
            assert_eq!(s.delay(1, r), s.delay(1, r));
        }
    }

    #[test]
    fn gives_up_after_max_age() {
        let s = sched();
        let first = Millis(0);
        let mut now = first;
        let mut attempt = 1;
        while let RetryDecision::RetryAt { at, .. } =
            s.next(now, first, attempt, attempt as u64 * 77, Span(0))
        {
            assert!(at > now && at.0 <= 5 * DAY);
            now = at;
            attempt += 1;
        }
        assert_eq!(now, Millis(5 * DAY));
        assert!((20..60).contains(&attempt), "{attempt} attempts");
    }

    #[test]
    fn minimum_delay_is_honoured() {
        let s = sched();
        let RetryDecision::RetryAt { at, .. } = s.next(Millis(0), Millis(0), 1, 0, Span::mins(30))
        else {
            panic!("expired")
        };
        assert_eq!(at, Millis(30 * MINUTE));
    }

    #[test]
    fn tiers() {
        let s = sched();
        assert_eq!(s.tier_for(Span::secs(5)).name, "1m");
        assert_eq!(s.tier_for(Span::mins(9)).name, "1m");
        assert_eq!(s.tier_for(Span::mins(10)).name, "10m");
        assert_eq!(s.tier_for(Span::hours(2)).name, "1h");
        assert_eq!(s.tier_for(Span::days(2)).name, "6h");
    }

    #[test]
    fn rejects_bad_config() {
        let cfg = RetryConfig {
            multiplier: 0.5,
            ..RetryConfig::default()
        };
        assert_eq!(
            RetrySchedule::new(&cfg).unwrap_err().field,
            "retry.multiplier"
        );
        let cfg = RetryConfig {
            tiers: vec![],
            ..RetryConfig::default()
        };
        assert_eq!(RetrySchedule::new(&cfg).unwrap_err().field, "retry.tiers");
    }
}
