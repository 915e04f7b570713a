//! When a failed post is tried again (pure: times are passed in).
//!
//! Attempt 1 is made when the event is read. After the n-th failed
//! attempt, the post waits `retry_delays[n - 1]` (the last delay repeats)
//! in that delay's retry topic. Every record of one retry topic waits the
//! same delay, so a topic's records fall due in the order they were
//! written and its reader never waits on one record while a later one is
//! due. A failure later than `retry_window` after the first attempt ends
//! the retries.

use std::time::{Duration, SystemTime};

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again from retry topic `tier` (an index of the delays) at `due`.
    Retry { tier: usize, due: SystemTime },
    /// The retry window is over.
    GiveUp,
}

/// What follows the failure of attempt `attempt` (1 for the first) of a
/// post first tried at `first`, failing at `now`.
pub fn after_failure(
    delays: &[Duration],
    window: Duration,
    attempt: u32,
    first: SystemTime,
    now: SystemTime,
) -> Next {
    let elapsed = now.duration_since(first).unwrap_or_default();
    if elapsed >= window || delays.is_empty() {
        return Next::GiveUp;
    }
    let tier = (attempt.max(1) as usize - 1).min(delays.len() - 1);
    Next::Retry {
        tier,
        due: now + delays[tier],
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn defaults() -> Vec<Duration> {
        [30, 120, 600, 3600, 4 * 3600]
            .map(Duration::from_secs)
            .to_vec()
    }

    /// The attempts a post that always fails gets (each failing at once).
    fn attempts(delays: &[Duration], window: Duration) -> (u32, Duration) {
        let first = SystemTime::UNIX_EPOCH;
        let (mut now, mut attempt) = (first, 1);
        while let Next::Retry { due, .. } = after_failure(delays, window, attempt, first, now) {
            now = due;
            attempt += 1;
        }
        (attempt, now.duration_since(first).unwrap())
    }

    #[test]
    fn the_defaults_back_off_then_retry_every_four_hours_for_a_day() {
        let t0 = SystemTime::UNIX_EPOCH;
        let d = defaults();
        let window = Duration::from_secs(86_400);
        let next = |attempt| after_failure(&d, window, attempt, t0, t0);
        assert_eq!(
            next(1),
            Next::Retry {
                tier: 0,
                due: t0 + d[0]
            }
        );
        assert_eq!(
            next(4),
            Next::Retry {
                tier: 3,
                due: t0 + d[3]
            }
        );
        assert_eq!(
            next(9),
            Next::Retry {
                tier: 4,
                due: t0 + d[4]
            }
        );
        // 30 s + 2 m + 10 m + 1 h, then every 4 h until a day has passed.
        let (count, span) = attempts(&d, window);
        assert_eq!(count, 11);
        assert!(span >= window && span < window + d[4], "{span:?}");
    }

    proptest! {
        #[test]
        fn retries_cover_the_window_and_stop_after_it(
            raw in proptest::collection::vec(1u64..10_000, 1..8),
            window in 0u64..200_000,
        ) {
            let delays: Vec<Duration> = raw.iter().copied().map(Duration::from_secs).collect();
            let window = Duration::from_secs(window);
            let (_, span) = attempts(&delays, window);
            let longest = *delays.iter().max().unwrap();
            prop_assert!(span >= window);
            prop_assert!(span < window + longest);
        }
    }
}
