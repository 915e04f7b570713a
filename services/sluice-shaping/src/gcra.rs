//! Generic cell rate algorithm (GCRA) and calendar-window counters.
//!
//! A GCRA keeps one number, the theoretical arrival time (TAT). A send at `now`
//! conforms when `now >= TAT - tolerance`; it then moves TAT to `max(TAT, now) + interval`.
//! State is a plain integer in microseconds, so it serializes and never reads a clock.
//!
//! Window bound. With base interval `T` = ceil(W / (N − B + 1)) and tolerance `τ = (B − 1)·T`,
//! take n conforming sends at t1 ≤ … ≤ tn inside a window of length W. Every send moves
//! TAT forward by at least `T` (slowing only makes the step larger), so before send n,
//! TAT ≥ t1 + (n − 1)·T, and conformance gives tn ≥ TAT − τ ≥ t1 + (n − B)·T. As
//! tn − t1 < W ≤ (N − B + 1)·T, we get n − B < N − B + 1, so n ≤ N.

use serde::{Deserialize, Serialize};

/// Parameters of one GCRA: emission interval and burst tolerance, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcraParams {
    interval_us: u64,
    tolerance_us: u64,
}

impl GcraParams {
    /// At most `limit` sends in any sliding window of `window_ms`, of which up to `burst`
    /// may leave back to back. The sustained spacing is `window / (limit - burst + 1)`.
    pub fn new(limit: u32, window_ms: u64, burst: u32) -> GcraParams {
        let limit = limit.max(1);
        let burst = burst.clamp(1, limit);
        let interval_us = (window_ms * 1_000).div_ceil(u64::from(limit - burst + 1));
        GcraParams {
            interval_us,
            tolerance_us: u64::from(burst - 1) * interval_us,
        }
    }

    /// The emission interval (sustained spacing) in microseconds.
    pub(crate) fn interval_us(self) -> u64 {
        self.interval_us
    }

    /// The same limit slowed to `permille`/1000 of its rate. Only the interval grows; the
    /// tolerance stays, which keeps the sliding-window bound of [`GcraParams::new`].
    pub fn slowed(self, permille: u16) -> GcraParams {
        if permille >= 1000 {
            return self;
        }
        let permille = u64::from(permille.max(1));
        GcraParams {
            interval_us: (self.interval_us * 1000).div_ceil(permille),
            ..self
        }
    }
}

/// GCRA state: the theoretical arrival time in microseconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gcra {
    tat_us: u64,
}

impl Gcra {
    /// Earliest microsecond at which one send conforms.
    pub fn ready_at_us(&self, p: GcraParams) -> u64 {
        self.tat_us.saturating_sub(p.tolerance_us)
    }

    /// How many sends would conform back to back at `now_us`.
    pub fn available(&self, now_us: u64, p: GcraParams) -> u64 {
        if now_us < self.ready_at_us(p) {
            return 0;
        }
        let base = self.tat_us.max(now_us);
        (now_us + p.tolerance_us - base) / p.interval_us + 1
    }

    /// Records one send at `now_us` (the caller checked conformance).
    pub fn commit(&mut self, now_us: u64, p: GcraParams) {
        self.tat_us = self.tat_us.max(now_us) + p.interval_us;
    }
}

/// A count within one calendar window (UTC hour or day), identified by its number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCount {
    window: u32,
    count: u32,
}

impl WindowCount {
    /// The count in `window` (zero once the window has moved on).
    pub fn get(&self, window: u32) -> u32 {
        if self.window == window { self.count } else { 0 }
    }

    /// Adds one in `window`, resetting when the window changed.
    pub fn add(&mut self, window: u32) {
        self.count = self.get(window) + 1;
        self.window = window;
    }

    /// Adds the counts of `other` (of another counter) that still matter from the later of
    /// the two windows on.
    pub(crate) fn merge(&mut self, other: WindowCount) {
        if other.window > self.window {
            *self = other;
        } else if other.window == self.window {
            self.count += other.count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: GcraParams, g: &mut Gcra, now_us: u64) -> bool {
        let ok = g.available(now_us, p) > 0;
        if ok {
            g.commit(now_us, p);
        }
        ok
    }

    #[test]
    fn no_burst_spaces_evenly() {
        let p = GcraParams::new(10, 1_000, 1);
        let mut g = Gcra::default();
        assert!(run(p, &mut g, 0));
        assert!(!run(p, &mut g, 99_999));
        assert!(run(p, &mut g, 100_000));
    }

    #[test]
    fn burst_then_sustained_rate_keeps_window_bound() {
        let p = GcraParams::new(10, 1_000, 5);
        let mut g = Gcra::default();
        let sent = (0..100).filter(|_| run(p, &mut g, 0)).count();
        assert_eq!(sent, 5);
        let mut times = Vec::new();
        for t in (0..3_000_000).step_by(1_000) {
            if run(p, &mut g, t) {
                times.push(t);
            }
        }
        for (i, &t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|&&u| u < t + 1_000_000)
                .count();
            assert!(in_window <= 10, "{in_window} in window at {t}");
        }
    }

    #[test]
    fn available_counts_burst() {
        let p = GcraParams::new(100, 60_000, 10);
        let g = Gcra::default();
        assert_eq!(g.available(1_000_000, p), 10);
    }

    #[test]
    fn slowed_rate_is_lower() {
        let p = GcraParams::new(10, 1_000, 1).slowed(500);
        let mut g = Gcra::default();
        assert!(run(p, &mut g, 0));
        assert!(!run(p, &mut g, 100_000));
        assert!(run(p, &mut g, 200_000));
    }

    #[test]
    fn window_count_resets() {
        let mut c = WindowCount::default();
        c.add(7);
        c.add(7);
        assert_eq!(c.get(7), 2);
        assert_eq!(c.get(8), 0);
        c.add(8);
        assert_eq!(c.get(8), 1);
    }
}
