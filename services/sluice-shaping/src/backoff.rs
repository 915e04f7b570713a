//! Adaptive backoff: additive increase, multiplicative decrease of a path's rate.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::time::{Millis, Span};

/// How paths slow down on bad replies and speed up again on success.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// On a slowing reply the path's rate becomes this percent of what it was. Default 50.
    pub decrease_percent: u16,
    /// Each increase adds this many percent of the configured ceiling. Default 10.
    pub increase_percent: u16,
    /// Successful deliveries in a row (no slowing reply between) that earn one increase.
    /// Default 20.
    pub success_streak: u32,
    /// Minimum time between two changes of a path's rate. Default `1m`.
    pub increase_interval: Span,
    /// The rate never drops below this percent of the ceiling. Default 5.
    pub min_percent: u16,
    /// Suspension length when a suspend rule names no duration. Default `15m`.
    pub default_suspension: Span,
}

impl Default for BackoffConfig {
    fn default() -> BackoffConfig {
        BackoffConfig {
            decrease_percent: 50,
            increase_percent: 10,
            success_streak: 20,
            increase_interval: Span::mins(1),
            min_percent: 5,
            default_suspension: Span::mins(15),
        }
    }
}

impl BackoffConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=99).contains(&self.decrease_percent) {
            return Err(ConfigError::new(
                "backoff.decrease_percent",
                "must be 1..=99",
            ));
        }
        if !(1..=100).contains(&self.increase_percent) {
            return Err(ConfigError::new(
                "backoff.increase_percent",
                "must be 1..=100",
            ));
        }
        if !(1..=100).contains(&self.min_percent) {
            return Err(ConfigError::new("backoff.min_percent", "must be 1..=100"));
        }
        Ok(())
    }
}

/// AIMD state of one path: its current share of the configured rate, in permille.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aimd {
    permille: u16,
    streak: u32,
    changed_at: Millis,
}

impl Default for Aimd {
    fn default() -> Aimd {
        Aimd {
            permille: 1000,
            streak: 0,
            changed_at: Millis(0),
        }
    }
}

impl Aimd {
    /// Current rate in permille of the ceiling (1000 = full configured rate).
    pub fn permille(&self) -> u16 {
        self.permille
    }

    /// Multiplicative decrease; resets the success streak.
    pub fn decrease(&mut self, now: Millis, cfg: &BackoffConfig) {
        let floor = cfg.min_percent * 10;
        let cut = u32::from(self.permille) * u32::from(cfg.decrease_percent) / 100;
        self.permille = (cut as u16).max(floor);
        self.streak = 0;
        self.changed_at = now;
    }

    /// Records a success; returns true when it raised the rate (additive increase).
    pub fn success(&mut self, now: Millis, cfg: &BackoffConfig) -> bool {
        if self.permille >= 1000 {
            return false;
        }
        self.streak = self.streak.saturating_add(1);
        let waited = now.since(self.changed_at) >= cfg.increase_interval;
        if self.streak < cfg.success_streak || !waited {
            return false;
        }
        self.permille = (self.permille + cfg.increase_percent * 10).min(1000);
        self.streak = 0;
        self.changed_at = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrease_is_multiplicative_with_floor() {
        let cfg = BackoffConfig::default();
        let mut a = Aimd::default();
        a.decrease(Millis(0), &cfg);
        assert_eq!(a.permille(), 500);
        for _ in 0..10 {
            a.decrease(Millis(0), &cfg);
        }
        assert_eq!(a.permille(), 50);
    }

    #[test]
    fn increase_needs_streak_and_interval() {
        let cfg = BackoffConfig::default();
        let mut a = Aimd::default();
        a.decrease(Millis(0), &cfg);
        for _ in 0..100 {
            assert!(!a.success(Millis(1_000), &cfg));
        }
        assert!(a.success(Millis(60_000), &cfg));
        assert_eq!(a.permille(), 600);
    }

    #[test]
    fn recovers_to_ceiling_and_stays() {
        let cfg = BackoffConfig::default();
        let mut a = Aimd::default();
        a.decrease(Millis(0), &cfg);
        a.decrease(Millis(0), &cfg);
        let mut t = 0;
        while a.permille() < 1000 {
            t += 5_000;
            a.success(Millis(t), &cfg);
            assert!(t < 3_600_000, "did not recover in an hour");
        }
        assert!(!a.success(Millis(t + 60_000), &cfg));
        assert_eq!(a.permille(), 1000);
    }
}
