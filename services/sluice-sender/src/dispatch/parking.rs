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
//! message comes back at `max` and takes a new slot then; if it already
//! waited that long, its slot may lie as far as the next longer delay tier
//! ([`furthest`]), so a deep backlog is written once per that tier's span,
//! not once per `max`. Pure: the caller passes the time.

use std::collections::VecDeque;

use sluice_shaping::{Millis, Span, Tier};

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
        // so messages that come back from a capped hold are not counted
        // twice. A shorter `max` than an earlier message's keeps the count.
        let slot = behind_queue.max(behind_parked).min(now.after(max));
        self.parked_until = Some(self.parked_until.map_or(slot, |t| t.max(slot)));
        Span(slot.0 - now.0).max(min).min(max)
    }
}

/// The furthest ahead a message that overflows after waiting `waited`
/// since it was parked may be given a slot: `max`, or for one that waited
/// at least `max` (it came back from the furthest slot and overflows
/// again), the shortest of `tiers` longer than it waited (the longest if
/// none is), when that is further. So each write of a long backlog carries
/// it a tier's span, while the slots within that span are still given in
/// turn.
pub(crate) fn furthest(max: Span, waited: Option<Span>, tiers: &[Tier]) -> Span {
    let Some(waited) = waited.filter(|w| *w >= max) else {
        return max;
    };
    let delays = tiers.iter().map(|t| t.delay);
    let next = delays.clone().find(|t| *t > waited);
    let longest = delays.max();
    next.or(longest).map_or(max, |t| t.max(max))
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

    const SIX: Span = Span(6 * 3_600_000);

    /// The default tiers: 1m, 10m, 1h, 6h.
    fn tiers() -> Vec<Tier> {
        [Span(60_000), Span(600_000), HOUR, SIX]
            .into_iter()
            .map(|delay| Tier {
                name: delay.to_string(),
                delay,
            })
            .collect()
    }

    #[test]
    fn mail_back_from_the_furthest_slot_may_go_a_tier_further() {
        let back = Some(Span(HOUR.0 + 5_000));
        assert_eq!(furthest(HOUR, back, &tiers()), SIX);
        // After six hours there is no longer tier: the longest again.
        let six = Some(Span(SIX.0 + 5_000));
        assert_eq!(furthest(HOUR, six, &tiers()), SIX);
        // First parked, or woken (no parked time), or back from a nearer slot.
        assert_eq!(furthest(HOUR, None, &tiers()), HOUR);
        assert_eq!(furthest(HOUR, Some(Span(HOUR.0 / 2)), &tiers()), HOUR);
        // A cap longer than every tier is not shortened.
        let long = Span(12 * 3_600_000);
        assert_eq!(furthest(long, Some(long), &tiers()), long);
    }

    #[test]
    fn a_site_ten_a_minute_gives_slots_up_to_the_next_tier_then_parks_there() {
        // 2,000 queued at 10/min: 200 minutes of work, beyond six hours
        // only after 1,600 more slots.
        let now = 10_000_000;
        let mut p = draining(6_000, 30, now);
        let queue_drained = Span(2000 * 6_000);
        assert_eq!(p.hold(Millis(now), 2000, MIN, SIX), queue_drained);
        assert_eq!(
            p.hold(Millis(now), 2000, MIN, SIX),
            Span(queue_drained.0 + 6_000)
        );
        for _ in 0..2000 {
            p.hold(Millis(now), 2000, MIN, SIX);
        }
        assert_eq!(p.hold(Millis(now), 2000, MIN, SIX), SIX);
        // Mail parked for the first time meanwhile still waits the cap,
        // and does not pull the count back.
        assert_eq!(p.hold(Millis(now), 2000, MIN, HOUR), HOUR);
        assert_eq!(p.parked_until, Some(Millis(now).after(SIX)));
    }

    proptest! {
        /// The furthest slot is `max` but for mail that waited `max`, and
        /// then a tier's delay.
        #[test]
        fn the_furthest_slot_moves_only_for_mail_back_from_it(
            max_mins in 1u64..600,
            waited_mins in proptest::option::of(0u64..1_000),
        ) {
            let max = Span(max_mins * 60_000);
            let waited = waited_mins.map(|m| Span(m * 60_000));
            let far = furthest(max, waited, &tiers());
            prop_assert!(far >= max);
            if far > max {
                prop_assert!(waited.is_some_and(|w| w >= max));
                prop_assert!(tiers().iter().any(|t| t.delay == far));
            }
        }

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
