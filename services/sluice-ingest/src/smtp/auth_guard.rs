//! Failed SMTP logins per key — the client address, and the user name
//! tried: after its limit of failures within [`WINDOW`], the key gets
//! `454 4.7.0` for every AUTH until the window has passed since its first
//! failure, so passwords cannot be guessed at the speed of the network,
//! from one address or spread over many against one user. Bounded: at most
//! [`MAX_KEYS`] keys are remembered (expired entries are dropped first,
//! then the oldest).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failed logins one address may have within [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// Failed logins one user name may have within [`WINDOW`], from any
/// addresses. Higher than an address's: reaching it locks out the user's
/// real clients too, so it only stops guessing spread over many addresses.
/// Unknown names count the same (the answer tells nothing).
pub const MAX_USER_FAILURES: u32 = 50;
/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(600);
/// Most keys remembered at once.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// Shared by every session of a listener.
#[derive(Debug)]
pub struct AuthGuard<K = IpAddr> {
    limit: u32,
    failures: Mutex<HashMap<K, Failures>>,
}

impl Default for AuthGuard<IpAddr> {
    fn default() -> Self {
        Self::new(MAX_FAILURES)
    }
}

impl<K: Hash + Eq + Clone> AuthGuard<K> {
    /// A guard locking a key after `limit` failures within [`WINDOW`].
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            failures: Mutex::default(),
        }
    }

    /// True while `key` has used up its failures in the current window.
    pub fn locked(&self, key: &K, now: Instant) -> bool {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures
            .get(key)
            .is_some_and(|f| now.duration_since(f.since) < WINDOW && f.count >= self.limit)
    }

    /// Counts a failed login of `key`.
    pub fn failed(&self, key: K, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_KEYS && !failures.contains_key(&key) {
            failures.retain(|_, f| now.duration_since(f.since) < WINDOW);
            if failures.len() >= MAX_KEYS
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(key, _)| key.clone())
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(key).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.duration_since(entry.since) >= WINDOW {
            *entry = Failures {
                count: 0,
                since: now,
            };
        }
        entry.count += 1;
    }

    /// Forgets `key`'s failures (a successful login).
    pub fn succeeded(&self, key: &K) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_locked_after_its_failures_until_the_window_passes() {
        let guard = AuthGuard::default();
        let (ip, other) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        let start = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            guard.failed(ip, start);
        }
        assert!(!guard.locked(&ip, start));
        guard.failed(ip, start);
        assert!(guard.locked(&ip, start), "locked at the limit");
        assert!(!guard.locked(&other, start), "only that address");
        assert!(!guard.locked(&ip, start + WINDOW), "the window passed");
        guard.failed(ip, start + WINDOW);
        assert!(
            !guard.locked(&ip, start + WINDOW),
            "a new window starts at one"
        );
        guard.succeeded(&ip);
        assert!(guard.failures.lock().unwrap().is_empty());
    }

    #[test]
    fn a_user_name_is_locked_after_its_own_limit() {
        let guard = AuthGuard::<String>::new(MAX_USER_FAILURES);
        let start = Instant::now();
        for _ in 0..MAX_USER_FAILURES {
            assert!(!guard.locked(&"ann".to_owned(), start));
            guard.failed("ann".to_owned(), start);
        }
        assert!(guard.locked(&"ann".to_owned(), start));
        assert!(!guard.locked(&"bob".to_owned(), start));
    }
}
