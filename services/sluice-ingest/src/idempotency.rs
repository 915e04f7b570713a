//! Idempotency keys: the same (tenant, key) within the TTL returns the first
//! result and publishes nothing.
//!
//! This store is in-process and bounded, so it is per node: a retry that
//! lands on another node is not recognized. The cluster version keeps the
//! keys in ScyllaDB (`INSERT ... IF NOT EXISTS` with a TTL) owned by control.
//! Time is passed in, so the logic is tested without a clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sluice_proto::v1::SendResponse;

type Key = (String, String);

enum State {
    /// A request with this key is being processed.
    InFlight,
    /// It failed; a retry reuses these message ids so durable copies of a
    /// partial publish are repeats of the same ids, not new messages.
    Failed(Vec<String>),
    /// It succeeded with this answer.
    Done(SendResponse),
}

struct Entry {
    state: State,
    at: Instant,
}

/// What a new request with a key should do.
#[derive(Debug)]
pub enum Begin {
    /// Process it; reuse these ids (by recipient index) when present.
    Start(Option<Vec<String>>),
    /// Answer with the stored response.
    Replay(SendResponse),
    /// Another request with the same key is in flight.
    Busy,
}

/// Bounded store of recent keys.
pub struct IdempotencyStore {
    ttl: Duration,
    max_entries: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    order: VecDeque<(Key, Instant)>,
}

impl IdempotencyStore {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries: max_entries.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a request with `key` at `now`.
    pub fn begin(&self, tenant: &str, key: &str, now: Instant) -> Begin {
        let mut inner = self.lock();
        inner.expire(now, self.ttl, self.max_entries);
        let id = (tenant.to_owned(), key.to_owned());
        let reuse = match inner.entries.get(&id).map(|e| &e.state) {
            Some(State::InFlight) => return Begin::Busy,
            Some(State::Done(response)) => return Begin::Replay(response.clone()),
            Some(State::Failed(ids)) => Some(ids.clone()),
            None => None,
        };
        inner.entries.insert(
            id.clone(),
            Entry {
                state: State::InFlight,
                at: now,
            },
        );
        inner.order.push_back((id, now));
        Begin::Start(reuse)
    }

    /// Records the answer of a successful request.
    pub fn succeed(&self, tenant: &str, key: &str, response: SendResponse) {
        self.set(tenant, key, State::Done(response));
    }

    /// Records a failure; a retry reuses `ids`.
    pub fn fail(&self, tenant: &str, key: &str, ids: Vec<String>) {
        self.set(tenant, key, State::Failed(ids));
    }

    fn set(&self, tenant: &str, key: &str, state: State) {
        let mut inner = self.lock();
        if let Some(entry) = inner.entries.get_mut(&(tenant.to_owned(), key.to_owned())) {
            entry.state = state;
        }
    }

    /// Keys currently remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Inner {
    fn expire(&mut self, now: Instant, ttl: Duration, max_entries: usize) {
        while let Some((key, at)) = self.order.front() {
            let expired = now.duration_since(*at) >= ttl;
            if !expired && self.entries.len() < max_entries {
                break;
            }
            // Only drop the entry if it is the one this queue slot refers to.
            if self.entries.get(key).is_some_and(|e| e.at == *at) {
                self.entries.remove(key);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: &str) -> SendResponse {
        SendResponse {
            recipients: vec![sluice_proto::v1::AcceptedRecipient {
                address: "a@b.c".into(),
                message_id: id.into(),
                suppressed: false,
            }],
            replayed: false,
        }
    }

    #[test]
    fn second_request_replays_the_first_answer() {
        let store = IdempotencyStore::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert!(matches!(store.begin("t", "k", t0), Begin::Start(None)));
        assert!(matches!(store.begin("t", "k", t0), Begin::Busy));
        store.succeed("t", "k", response("ID1"));
        match store.begin("t", "k", t0 + Duration::from_secs(59)) {
            Begin::Replay(r) => assert_eq!(r.recipients[0].message_id, "ID1"),
            other => panic!("expected a replay, got {other:?}"),
        }
        assert!(
            matches!(store.begin("other", "k", t0), Begin::Start(None)),
            "per tenant"
        );
    }

    #[test]
    fn keys_expire_after_the_ttl() {
        let store = IdempotencyStore::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert!(matches!(store.begin("t", "k", t0), Begin::Start(None)));
        store.succeed("t", "k", response("ID1"));
        assert!(matches!(
            store.begin("t", "k", t0 + Duration::from_secs(60)),
            Begin::Start(None)
        ));
    }

    #[test]
    fn failures_hand_their_ids_to_the_retry() {
        let store = IdempotencyStore::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let _ = store.begin("t", "k", t0);
        store.fail("t", "k", vec!["ID1".into(), "ID2".into()]);
        match store.begin("t", "k", t0) {
            Begin::Start(Some(ids)) => assert_eq!(ids, vec!["ID1", "ID2"]),
            other => panic!("expected ids to reuse, got {other:?}"),
        }
    }

    #[test]
    fn the_store_stays_bounded() {
        let store = IdempotencyStore::new(Duration::from_secs(600), 3);
        let t0 = Instant::now();
        for i in 0..10 {
            let _ = store.begin("t", &format!("k{i}"), t0);
        }
        assert!(store.len() <= 3, "{} entries", store.len());
    }
}
