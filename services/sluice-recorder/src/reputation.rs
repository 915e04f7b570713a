//! Reputation as pure computation: counts over a window → rates → a signal.
//!
//! No I/O, no clock. The recorder feeds it the sums of the hourly counters
//! of the rolling window; senders act on the signal it returns.
//!
//! Rates (all 0.0 to 1.0):
//! - `sent` = delivered + bounced − late bounces (final outcomes of attempts;
//!   a late bounce, reported by mail after its message was delivered, is in
//!   both `delivered` and `bounced` and counts once);
//! - delivery rate = delivered / sent;
//! - hard-bounce rate = hard bounces (bad mailbox, bad domain) / sent;
//! - complaint rate = complaints / delivered (complaints can only follow a
//!   delivery; counted as 1.0 when complaints arrived but nothing was delivered);
//! - deferral rate = deferred / (delivered + deferred).
//!
//! Each rate has its own denominator so that more hard bounces or more
//! complaints can only make every rate that matters worse — the signal is
//! monotonic (tested with proptest below).

use serde::{Deserialize, Serialize};

/// Sums of the counters over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub hard_bounced: u64,
    pub complained: u64,
    /// Bounces reported by mail after the message was delivered (also in
    /// `bounced`).
    pub late_bounced: u64,
}

/// Rates derived from [`Counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub sent: u64,
    pub delivery_rate: f64,
    pub deferral_rate: f64,
    pub hard_bounce_rate: f64,
    pub complaint_rate: f64,
}

/// How hard to step on the brakes, mildest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Nothing to do.
    Ok,
    /// Early warning: keep a warming IP on its current warm-up day.
    Hold,
    /// Review and slow the path (or the tenant) down.
    Slow,
    /// Stop: pause the IP toward the site, or pause the tenant.
    Pause,
}

impl Level {
    /// Signal text for a (source IP, site) path: `ok`, `hold`, `slow`, `pause`.
    pub fn path_signal(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Hold => "hold",
            Level::Slow => "slow",
            Level::Pause => "pause",
        }
    }

    /// Signal text for a tenant: `ok`, `slow`, `pause_tenant` (warm-up holds
    /// concern IPs, so a tenant at `Hold` is `ok`).
    pub fn tenant_signal(self) -> &'static str {
        match self {
            Level::Ok | Level::Hold => "ok",
            Level::Slow => "slow",
            Level::Pause => "pause_tenant",
        }
    }
}

/// Where rates turn into signals. Defaults follow Amazon SES's published
/// limits (bounce 5 % / complaint 0.1 % → review, 10 % / 0.5 % → pause).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Messages sent (delivered + bounced − late bounces) in the window below which a path
    /// or tenant is not judged and stays `ok`.
    pub min_volume: u64,
    /// Hard-bounce rate from which a warming IP is held on its day.
    pub hold_hard_bounce: f64,
    /// Hard-bounce rate from which the path is slowed (SES: review at 5 %).
    pub slow_hard_bounce: f64,
    /// Hard-bounce rate from which the path is paused (SES: 10 %).
    pub pause_hard_bounce: f64,
    /// Complaint rate from which a warming IP is held on its day.
    pub hold_complaint: f64,
    /// Complaint rate from which the path is slowed (SES: review at 0.1 %).
    pub slow_complaint: f64,
    /// Complaint rate from which the path is paused (SES: 0.5 %).
    pub pause_complaint: f64,
    /// Deferral rate from which a warming IP is held on its day.
    pub hold_deferral: f64,
    /// Deferral rate from which the path is slowed. Deferrals never pause:
    /// the sender's adaptive backoff handles throttling.
    pub slow_deferral: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_volume: 200,
            hold_hard_bounce: 0.02,
            slow_hard_bounce: 0.05,
            pause_hard_bounce: 0.10,
            hold_complaint: 0.0005,
            slow_complaint: 0.001,
            pause_complaint: 0.005,
            hold_deferral: 0.20,
            slow_deferral: 0.40,
        }
    }
}

impl Thresholds {
    /// Every rate within 0..=1 and each ladder non-decreasing.
    pub fn validate(&self) -> Result<(), String> {
        let ladders = [
            (
                "hard_bounce",
                [
                    self.hold_hard_bounce,
                    self.slow_hard_bounce,
                    self.pause_hard_bounce,
                ],
            ),
            (
                "complaint",
                [
                    self.hold_complaint,
                    self.slow_complaint,
                    self.pause_complaint,
                ],
            ),
            (
                "deferral",
                [self.hold_deferral, self.slow_deferral, self.slow_deferral],
            ),
        ];
        for (name, [hold, slow, pause]) in ladders {
            if [hold, slow, pause].iter().any(|r| !(0.0..=1.0).contains(r)) {
                return Err(format!(
                    "reputation.thresholds.*_{name}: rates must be within 0.0..=1.0"
                ));
            }
            if !(hold <= slow && slow <= pause) {
                return Err(format!(
                    "reputation.thresholds.*_{name}: need hold <= slow <= pause"
                ));
            }
        }
        Ok(())
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    match (part, whole) {
        (0, _) => 0.0,
        (_, 0) => 1.0,
        (p, w) => (p as f64 / w as f64).min(1.0),
    }
}

/// Rates of a window's counts.
pub fn rates(c: &Counts) -> Rates {
    let late = c.late_bounced.min(c.bounced).min(c.delivered);
    let sent = c.delivered.saturating_add(c.bounced) - late;
    Rates {
        sent,
        delivery_rate: if sent == 0 {
            0.0
        } else {
            ratio(c.delivered, sent)
        },
        deferral_rate: ratio(c.deferred, c.delivered.saturating_add(c.deferred)),
        hard_bounce_rate: ratio(c.hard_bounced.min(c.bounced), sent),
        complaint_rate: ratio(c.complained, c.delivered),
    }
}

/// The level a window's counts call for.
pub fn judge(c: &Counts, t: &Thresholds) -> Level {
    let r = rates(c);
    if r.sent < t.min_volume {
        return Level::Ok;
    }
    let at = |rate: f64, limit: f64| rate >= limit;
    if at(r.hard_bounce_rate, t.pause_hard_bounce) || at(r.complaint_rate, t.pause_complaint) {
        Level::Pause
    } else if at(r.hard_bounce_rate, t.slow_hard_bounce)
        || at(r.complaint_rate, t.slow_complaint)
        || at(r.deferral_rate, t.slow_deferral)
    {
        Level::Slow
    } else if at(r.hard_bounce_rate, t.hold_hard_bounce)
        || at(r.complaint_rate, t.hold_complaint)
        || at(r.deferral_rate, t.hold_deferral)
    {
        Level::Hold
    } else {
        Level::Ok
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn counts(delivered: u64, bounced: u64, hard: u64, complained: u64, deferred: u64) -> Counts {
        Counts {
            delivered,
            deferred,
            bounced,
            hard_bounced: hard,
            complained,
            late_bounced: 0,
        }
    }

    #[test]
    fn a_late_bounce_counts_its_message_as_sent_once() {
        // 60 delivered, 13 of them bounced later by mail: 60 sent, and the
        // hard-bounce rate is 13 in 60.
        let c = Counts {
            late_bounced: 13,
            ..counts(60, 13, 13, 0, 0)
        };
        let r = rates(&c);
        assert_eq!(r.sent, 60);
        assert!((r.hard_bounce_rate - 13.0 / 60.0).abs() < 1e-12);
        // A late count can never take more than it added.
        let odd = Counts {
            late_bounced: 50,
            ..counts(5, 2, 0, 0, 0)
        };
        assert_eq!(rates(&odd).sent, 5);
    }

    #[test]
    fn rates_use_their_own_denominators() {
        let r = rates(&counts(900, 100, 60, 9, 300));
        assert_eq!(r.sent, 1000);
        assert!((r.delivery_rate - 0.9).abs() < 1e-12);
        assert!((r.hard_bounce_rate - 0.06).abs() < 1e-12);
        assert!((r.complaint_rate - 0.01).abs() < 1e-12);
        assert!((r.deferral_rate - 0.25).abs() < 1e-12);
        assert_eq!(rates(&Counts::default()), Rates::default());
    }

    #[test]
    fn ses_defaults_give_the_expected_signals() {
        let t = Thresholds::default();
        assert_eq!(judge(&counts(1000, 0, 0, 0, 0), &t), Level::Ok);
        assert_eq!(judge(&counts(970, 30, 30, 0, 0), &t), Level::Hold);
        assert_eq!(judge(&counts(950, 50, 50, 0, 0), &t), Level::Slow);
        assert_eq!(judge(&counts(900, 100, 100, 0, 0), &t), Level::Pause);
        assert_eq!(
            judge(&counts(1000, 0, 0, 1, 0), &t),
            Level::Slow,
            "0.1 % complaints"
        );
        assert_eq!(
            judge(&counts(1000, 0, 0, 5, 0), &t),
            Level::Pause,
            "0.5 % complaints"
        );
        assert_eq!(
            judge(&counts(1000, 0, 0, 0, 700), &t),
            Level::Slow,
            "heavy deferral"
        );
        // Soft bounces (mailbox full, policy) are sent but not hard.
        assert_eq!(judge(&counts(800, 200, 0, 0, 0), &t), Level::Ok);
    }

    #[test]
    fn small_volumes_are_not_judged() {
        let t = Thresholds::default();
        assert_eq!(judge(&counts(50, 50, 50, 10, 0), &t), Level::Ok);
        assert_eq!(judge(&counts(100, 100, 100, 10, 0), &t), Level::Pause);
    }

    #[test]
    fn tenant_and_path_signals_are_named() {
        assert_eq!(Level::Hold.path_signal(), "hold");
        assert_eq!(Level::Hold.tenant_signal(), "ok");
        assert_eq!(Level::Pause.tenant_signal(), "pause_tenant");
        assert!(Level::Ok < Level::Hold && Level::Hold < Level::Slow && Level::Slow < Level::Pause);
    }

    #[test]
    fn inverted_ladders_are_rejected() {
        let t = Thresholds {
            slow_complaint: 0.01,
            pause_complaint: 0.005,
            ..Thresholds::default()
        };
        assert!(t.validate().expect_err("inverted").contains("complaint"));
    }

    fn any_counts() -> impl Strategy<Value = Counts> {
        (
            0..5000_u64,
            0..2000_u64,
            0..2000_u64,
            0..50_u64,
            0..5000_u64,
        )
            .prop_map(|(delivered, bounced, hard, complained, deferred)| {
                counts(delivered, bounced, hard.min(bounced), complained, deferred)
            })
    }

    proptest! {
        #[test]
        fn more_hard_bounces_never_yield_a_milder_signal(c in any_counts(), k in 1..3000_u64) {
            let t = Thresholds::default();
            let worse = Counts { bounced: c.bounced + k, hard_bounced: c.hard_bounced + k, ..c };
            prop_assert!(judge(&worse, &t) >= judge(&c, &t));
        }

        #[test]
        fn a_delivery_turned_into_a_hard_bounce_is_never_milder(c in any_counts(), k in 1..3000_u64) {
            let t = Thresholds::default();
            let k = k.min(c.delivered);
            let worse = Counts {
                delivered: c.delivered - k,
                bounced: c.bounced + k,
                hard_bounced: c.hard_bounced + k,
                ..c
            };
            prop_assert!(judge(&worse, &t) >= judge(&c, &t));
        }

        #[test]
        fn more_complaints_never_yield_a_milder_signal(c in any_counts(), k in 1..100_u64) {
            let t = Thresholds::default();
            let worse = Counts { complained: c.complained + k, ..c };
            prop_assert!(judge(&worse, &t) >= judge(&c, &t));
        }
    }
}
