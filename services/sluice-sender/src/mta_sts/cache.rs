//! The policy cache: per domain, the policy, the TXT id it was fetched
//! under and when it expires (`max_age` after the fetch). Bounded: past
//! `capacity` entries the one stored longest ago goes. Also remembers, for
//! a short while, fetches that failed, so a broken policy server is not
//! asked again for every message. Time is an argument: no clock reads here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::policy::Policy;

/// How long a failed fetch of one (domain, id) is not tried again.
pub const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// A cached policy.
#[derive(Debug, Clone)]
pub struct Cached {
    pub id: String,
    pub policy: Arc<Policy>,
    pub expires: Instant,
}

struct Entry {
    cached: Cached,
    seq: u64,
}

/// Policies per domain (lower case, no trailing dot).
pub struct Cache {
    entries: HashMap<String, Entry>,
    /// Insertion order: sequence number → domain.
    order: BTreeMap<u64, String>,
    next: u64,
    capacity: usize,
    /// (domain, id) whose fetch failed → when it may be tried again.
    failed: HashMap<(String, String), Instant>,
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            capacity: capacity.max(1),
            failed: HashMap::new(),
        }
    }

    /// The unexpired policy of `domain` at `now`.
    pub fn get(&self, domain: &str, now: Instant) -> Option<Cached> {
        self.entries
            .get(domain)
            .map(|e| &e.cached)
            .filter(|c| now < c.expires)
            .cloned()
    }

    /// Stores `policy`, fetched at `now` under `id`; evicts the oldest
    /// entry when full.
    pub fn put(&mut self, domain: &str, id: String, policy: Arc<Policy>, now: Instant) {
        let expires = now + Duration::from_secs(policy.max_age);
        if let Some(old) = self.entries.remove(domain) {
            self.order.remove(&old.seq);
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, domain.to_owned());
        let cached = Cached {
            id,
            policy,
            expires,
        };
        self.entries
            .insert(domain.to_owned(), Entry { cached, seq });
        self.failed.retain(|(d, _), _| d != domain);
    }

    /// Remembers that fetching `domain`'s policy `id` failed at `now`.
    pub fn failed(&mut self, domain: &str, id: &str, now: Instant) {
        if self.failed.len() >= self.capacity {
            self.failed.retain(|_, until| *until > now);
            if self.failed.len() >= self.capacity {
                self.failed.clear();
            }
        }
        let key = (domain.to_owned(), id.to_owned());
        self.failed.insert(key, now + RETRY_FAILED_AFTER);
    }

    /// Whether a fetch of `domain`'s policy `id` failed recently.
    pub fn recently_failed(&self, domain: &str, id: &str, now: Instant) -> bool {
        let key = (domain.to_owned(), id.to_owned());
        self.failed.get(&key).is_some_and(|until| now < *until)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::policy::Mode;
    use super::*;

    fn policy(max_age: u64) -> Arc<Policy> {
        Arc::new(Policy {
            mode: Mode::Enforce,
            mx: vec!["mx.example.com".into()],
            max_age,
        })
    }

    #[test]
    fn an_entry_lives_for_its_max_age() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        cache.put("a.test", "1".into(), policy(60), t0);
        assert_eq!(cache.get("a.test", t0).expect("cached").id, "1");
        assert!(cache.get("a.test", t0 + Duration::from_secs(59)).is_some());
        assert!(cache.get("a.test", t0 + Duration::from_secs(60)).is_none());
        assert!(cache.get("b.test", t0).is_none());
    }

    #[test]
    fn the_oldest_entry_goes_when_full() {
        let t0 = Instant::now();
        let mut cache = Cache::new(3);
        for d in ["a", "b", "c"] {
            cache.put(d, "1".into(), policy(600), t0);
        }
        cache.put("a", "2".into(), policy(600), t0);
        cache.put("d", "1".into(), policy(600), t0);
        assert_eq!(cache.len(), 3);
        assert!(cache.get("b", t0).is_none(), "b was stored longest ago");
        for d in ["a", "c", "d"] {
            assert!(cache.get(d, t0).is_some(), "{d}");
        }
    }

    #[test]
    fn a_failure_is_remembered_for_a_while_and_forgotten_on_success() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        cache.failed("a.test", "1", t0);
        assert!(cache.recently_failed("a.test", "1", t0 + Duration::from_secs(59)));
        assert!(!cache.recently_failed("a.test", "2", t0));
        assert!(!cache.recently_failed("a.test", "1", t0 + RETRY_FAILED_AFTER));
        cache.put("a.test", "1".into(), policy(60), t0);
        assert!(!cache.recently_failed("a.test", "1", t0));
    }
}
