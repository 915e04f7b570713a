//! Where an overflowed message waits: long enough that its site's ready
//! queue has room when it comes back, so a throttled site's backlog is not
//! written to the delay tiers again every `overflow_delay`.
//!
//! Each site queue measures how fast it drains (deliveries started from it
//! in the last [`WINDOW`]) and gives each overflowed message a slot: one
//! drain interval after the queue and after the messages parked before it.
//! The message's `not_before` is its slot; the delay tiers carry it there
//! (the longest tier within the time left, then the next: see
//! `fates::overflow` and the consumer's hop), so it comes back once, when
//! the site can take it, and a message that comes back early is hopped on
//! without taking a second slot. Slots lie at most `max` ahead: beyond, the
//! message comes back at `max` and takes a new slot then. Pure: the caller
//! passes the time.

use std::collections::VecDeque;

use sluice_shaping::{Millis, Span};

/// How far back deliveries count towards a site's drain rate.
pub(crate) const WINDOW: Span = Span(5 * 60 * 1000);
/// At most this many start times are kept per site (enough for a rate;
/// a fast site's window is then shorter than [`WINDOW`]).
const KEPT: usize = 256;

/// One site's drain measurement and the slot of its last parked message.
#[derive(Debug, Default)]
pub(crate) struct Parking {
    starts: VecDeque<Millis>,
    parked_until: Option<Millis>,
}

impl Parking {
    /// A delivery of the site started at `now`.
    pub(crate) fn on_start(&mut self, now: Millis) {
        if self.starts.len() == KEPT {
            self.starts.pop_front();
        }
        self.starts.push_back(now);
    }

    /// Deliveries per millisecond between the kept starts of the last
    /// [`WINDOW`]; `None` while fewer than two lie apart in it.
    fn rate(&mut self, now: Millis) -> Option<f64> {
        while self.starts.front().is_some_and(|t| now.since(*t) > WINDOW) {
            self.starts.pop_front();
        }
        let (first, last) = (*self.starts.front()?, *self.starts.back()?);
        let span = last.since(first).0;
        (span > 0).then(|| (self.starts.len() - 1) as f64 / span as f64)
    }

    /// How long a message overflowing now, behind `queued` messages, waits:
    /// until its slot, clamped to `[min, max]` (`max >= min`). Without a
    /// measured rate it waits `min` and takes no slot.
    pub(crate) fn hold(&mut self, now: Millis, queued: usize, min: Span, max: Span) -> Span {
        let Some(rate) = self.rate(now) else {
            return min;
        };
        let interval = (1.0 / rate).ceil() as u64;
        let behind_queue = now.after(Span((queued as f64 / rate).ceil() as u64));
        let behind_parked = self
            .parked_until
            .filter(|t| *t > now)
            .map_or(behind_queue, |t| t.after(Span(interval)));
        // Beyond `max` every slot is the same hold: the count stops there,
        // so messages that come back from a capped hold are not counted twice.
        let slot = behind_queue.max(behind_parked).min(now.after(max));
        self.parked_until = Some(slot);
        Span(slot.0 - now.0).max(min).min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: Span = Span(60_000);
    const HOUR: Span = Span(3_600_000);

    /// A site that started a delivery every `gap` ms for `n` starts, ending at `end`.
    fn draining(gap: u64, n: u64, end: u64) -> Parking {
        let mut p = Parking::default();
        for i in (0..n).rev() {
            p.on_start(Millis(end - i * gap));
        }
        p
    }

    #[test]
    fn without_a_rate_a_message_waits_the_minimum() {
        let mut p = Parking::default();
        assert_eq!(p.hold(Millis(1_000_000), 2000, MIN, HOUR), MIN);
        p.on_start(Millis(1_000_000));
        assert_eq!(p.hold(Millis(1_000_500), 2000, MIN, HOUR), MIN);
        assert_eq!(p.parked_until, None, "no slot was taken");
    }

    #[test]
    fn a_site_sending_ten_a_minute_parks_its_overflow_for_the_longest_hold() {
        // 2,000 queued at 10/min is 200 minutes of work.
        let now = 10_000_000;
        let mut p = draining(6_000, 30, now);
        assert_eq!(p.hold(Millis(now), 2000, MIN, HOUR), HOUR);
        assert_eq!(p.hold(Millis(now + 10), 2000, MIN, HOUR), HOUR);
    }

    #[test]
    fn a_fast_site_keeps_the_minimum() {
        // 100 a second, 1,500 queued: 15 s of work.
        let now = 10_000_000;
        let mut p = draining(10, 200, now);
        assert_eq!(p.hold(Millis(now), 1500, MIN, HOUR), MIN);
    }

    #[test]
    fn each_overflow_takes_the_next_slot_behind_the_queue() {
        // One a second, 300 queued: slots at 300 s, 301 s, 302 s.
        let now = 10_000_000;
        let mut p = draining(1_000, 100, now);
        for k in 0..3 {
            assert_eq!(
                p.hold(Millis(now), 300, MIN, HOUR),
                Span(300_000 + k * 1_000)
            );
        }
        // Time passes and the queue shrank: the parked line still counts.
        let later = now + 100_000;
        assert_eq!(p.hold(Millis(later), 10, MIN, HOUR), Span(203_000));
    }

    #[test]
    fn a_stale_rate_is_forgotten() {
        let now = 10_000_000;
        let mut p = draining(6_000, 30, now);
        let later = Millis(now + WINDOW.0 + 1);
        assert_eq!(p.hold(later, 2000, MIN, HOUR), MIN);
    }

    proptest! {
        /// Holds stay in `[min, max]`; the slots never go backwards nor
        /// beyond `max` from now.
        #[test]
        fn holds_are_bounded_and_slots_ordered(
            gap in 1u64..20_000,
            starts in 2u64..300,
            queued in 0usize..5000,
            overflows in 1usize..200,
            step in 0u64..2_000,
            max_mins in 1u64..600,
        ) {
            let max = Span(max_mins * 60_000);
            let now = 100_000_000;
            let mut p = draining(gap, starts, now);
            let mut last = Millis(0);
            for i in 0..overflows as u64 {
                let t = Millis(now + i * step);
                let hold = p.hold(t, queued, MIN, max);
                prop_assert!(hold >= MIN && hold <= max, "hold {hold:?}");
                if let Some(slot) = p.parked_until {
                    prop_assert!(slot <= t.after(max), "slot {slot:?} beyond max");
                    prop_assert!(slot >= last, "slot {slot:?} before {last:?}");
                    last = slot;
                }
            }
        }
    }
}
