//! Which posts to make now, per webhook. A slow or failing receiver must
//! not hold up other tenants' posts, so
//!
//! - at most `cap` posts to one webhook are in flight at once: a post
//!   waits for one of the webhook's slots for at most the post timeout,
//!   then waits in a retry topic instead ([`Health::slot`]);
//! - after [`OPEN_AFTER`] failures in a row, a webhook's first attempts are
//!   not made for [`OPEN_FOR`] after its last failure ([`Health::failing`]):
//!   its events go straight to a retry topic, and the retries probe it.
//!
//! The failure bookkeeping is pure (times are passed in).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Failures in a row after which first attempts wait.
pub const OPEN_AFTER: u32 = 5;
/// How long after the last failure first attempts wait.
pub const OPEN_FOR: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct State {
    slots: Arc<Semaphore>,
    failures: u32,
    last_failure: Option<Instant>,
}

/// The state of every webhook this dispatcher posted to (at most ten per
/// tenant).
#[derive(Debug)]
pub struct Health {
    cap: usize,
    webhooks: Mutex<HashMap<(String, String), State>>,
}

impl Health {
    /// At most `cap` posts in flight per webhook.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            webhooks: Mutex::default(),
        }
    }

    fn with<T>(&self, key: (&str, &str), f: impl FnOnce(&mut State) -> T) -> T {
        let mut all = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        let state = all
            .entry((key.0.to_owned(), key.1.to_owned()))
            .or_insert_with(|| State {
                slots: Arc::new(Semaphore::new(self.cap)),
                failures: 0,
                last_failure: None,
            });
        f(state)
    }

    /// The webhook's slots: a post holds one while it is in flight.
    pub fn slot(&self, key: (&str, &str)) -> Arc<Semaphore> {
        self.with(key, |s| s.slots.clone())
    }

    /// Whether the webhook failed its last [`OPEN_AFTER`] posts, the last
    /// less than [`OPEN_FOR`] before `now`.
    pub fn failing(&self, key: (&str, &str), now: Instant) -> bool {
        self.with(key, |s| {
            s.failures >= OPEN_AFTER
                && s.last_failure
                    .is_some_and(|at| now.saturating_duration_since(at) < OPEN_FOR)
        })
    }

    /// The outcome of a post.
    pub fn settle(&self, key: (&str, &str), delivered: bool, now: Instant) {
        self.with(key, |s| {
            if delivered {
                s.failures = 0;
                s.last_failure = None;
            } else {
                s.failures = s.failures.saturating_add(1);
                s.last_failure = Some(now);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: (&str, &str) = ("acme", "crm");

    #[test]
    fn each_webhook_has_cap_slots() {
        let h = Health::new(2);
        let slots = h.slot(K);
        let held = [
            slots.clone().try_acquire_owned(),
            slots.clone().try_acquire_owned(),
        ];
        assert!(held.iter().all(Result::is_ok));
        assert!(h.slot(K).try_acquire().is_err(), "the cap is shared");
        assert!(
            h.slot(("acme", "other")).try_acquire().is_ok(),
            "per webhook"
        );
        drop(held);
        assert!(h.slot(K).try_acquire().is_ok());
    }

    #[test]
    fn failures_in_a_row_hold_first_attempts_for_a_while() {
        let (h, t) = (Health::new(1), Instant::now());
        for _ in 0..OPEN_AFTER - 1 {
            h.settle(K, false, t);
        }
        assert!(!h.failing(K, t), "four failures");
        h.settle(K, false, t);
        assert!(h.failing(K, t));
        assert!(h.failing(K, t + OPEN_FOR / 2));
        assert!(!h.failing(K, t + OPEN_FOR), "the wait is over");
        h.settle(K, false, t + OPEN_FOR);
        assert!(h.failing(K, t + OPEN_FOR), "a failed probe: again");
        h.settle(K, true, t + OPEN_FOR);
        assert!(!h.failing(K, t + OPEN_FOR), "one success is enough");
    }
}
