//! Failed SMTP logins per client address: after [`MAX_FAILURES`] failures
//! within [`WINDOW`], the address gets `454 4.7.0` for every AUTH until the
//! window has passed since its first failure, so passwords cannot be
//! guessed at the speed of the network. Bounded: at most [`MAX_ADDRESSES`]
//! addresses are remembered (expired entries are dropped first, then the
//! oldest).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failed logins one address may have within [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(600);
/// Most addresses remembered at once.
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// Shared by every session of a listener.
#[derive(Debug, Default)]
pub struct AuthGuard {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl AuthGuard {
    /// True while `ip` has used up its failures in the current window.
    pub fn locked(&self, ip: IpAddr, now: Instant) -> bool {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures
            .get(&ip)
            .is_some_and(|f| now.duration_since(f.since) < WINDOW && f.count >= MAX_FAILURES)
    }

    /// Counts a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&ip) {
            failures.retain(|_, f| now.duration_since(f.since) < WINDOW);
            if failures.len() >= MAX_ADDRESSES
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(ip, _)| *ip)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(ip).or_insert(Failures {
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

    /// Forgets `ip`'s failures (a successful login).
    pub fn succeeded(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.remove(&ip);
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
        assert!(!guard.locked(ip, start));
        guard.failed(ip, start);
        assert!(guard.locked(ip, start), "locked at the limit");
        assert!(!guard.locked(other, start), "only that address");
        assert!(!guard.locked(ip, start + WINDOW), "the window passed");
        guard.failed(ip, start + WINDOW);
        assert!(
            !guard.locked(ip, start + WINDOW),
            "a new window starts at one"
        );
        guard.succeeded(ip);
        assert!(guard.failures.lock().unwrap().is_empty());
    }
}
