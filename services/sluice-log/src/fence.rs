//! [`Fence`]: which partitions a group member lost, and which of its work
//! on them is still going on.
//!
//! The consumer closes the fence for revoked partitions from inside the
//! rebalance callback, before librdkafka gives them up; the member's other
//! tasks check it before starting work. Work already started holds a
//! [`Work`] token; the callback waits (up to the fence's drain time) until
//! no token of a revoked partition is left, so everything started before the
//! revocation is settled before the next owner is assigned the partition.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

type Partition = (String, i32);

#[derive(Debug, Default)]
struct State {
    closed: HashSet<Partition>,
    busy: HashMap<Partition, usize>,
    /// How long [`Fence::wait_idle`] waits at most; zero: not at all.
    drain: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    idle: Condvar,
}

/// Partitions taken away from a member, and the work still running on
/// them; see [`crate::GroupConsumer::fence`]. Clones share everything.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<Inner>);

impl Fence {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when `partition` of `topic` was taken away and not given back.
    pub fn is_closed(&self, topic: &str, partition: i32) -> bool {
        let state = self.state();
        !state.closed.is_empty() && state.closed.contains(&(topic.to_owned(), partition))
    }

    /// Closes `partitions` (they were revoked).
    pub fn close(&self, partitions: &[Partition]) {
        self.state().closed.extend(partitions.iter().cloned());
    }

    /// Opens `partitions` again (they were assigned).
    pub fn open(&self, partitions: &[Partition]) {
        let mut state = self.state();
        for p in partitions {
            state.closed.remove(p);
        }
    }

    /// Sets how long a revocation waits for started work to settle.
    pub fn set_drain(&self, drain: Duration) {
        self.state().drain = drain;
    }

    /// Marks work on a record of `partition` as started; it is settled when
    /// the token is dropped.
    pub fn begin(&self, topic: &str, partition: i32) -> Work {
        let key = (topic.to_owned(), partition);
        *self.state().busy.entry(key.clone()).or_default() += 1;
        Work {
            fence: self.clone(),
            key: Some(key),
        }
    }

    /// Work tokens alive for `partitions`.
    pub fn busy(&self, partitions: &[Partition]) -> usize {
        let state = self.state();
        partitions.iter().filter_map(|p| state.busy.get(p)).sum()
    }

    /// Blocks the calling thread until no work of `partitions` is left or
    /// the drain time passed; returns the tokens still alive. Call it only
    /// where blocking is allowed (see [`block_while_draining`]).
    pub fn wait_idle(&self, partitions: &[Partition]) -> usize {
        let mut state = self.state();
        let deadline = Instant::now() + state.drain;
        loop {
            let left: usize = partitions.iter().filter_map(|p| state.busy.get(p)).sum();
            let now = Instant::now();
            if left == 0 || now >= deadline {
                return left;
            }
            state = self
                .0
                .idle
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn settle(&self, key: &Partition) {
        let mut state = self.state();
        if let Some(n) = state.busy.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                state.busy.remove(key);
            }
        }
        drop(state);
        self.0.idle.notify_all();
    }
}

/// Work in progress on one record; see [`Fence::begin`].
#[derive(Debug)]
pub struct Work {
    fence: Fence,
    key: Option<Partition>,
}

impl Drop for Work {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.fence.settle(&key);
        }
    }
}

/// Runs `wait` on the calling thread where blocking it is safe: outside a
/// runtime directly, on a multi-threaded runtime after handing the worker's
/// other tasks to another thread. On a current-thread runtime nothing else
/// could run while it blocks, so it does not wait and returns `None`.
pub(crate) fn block_while_draining<T>(wait: impl FnOnce() -> T) -> Option<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => Some(wait()),
        Ok(RuntimeFlavor::MultiThread) => Some(tokio::task::block_in_place(wait)),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_closes_revoked_partitions_until_they_are_assigned_again() {
        let fence = Fence::default();
        let other = fence.clone();
        assert!(!fence.is_closed("t", 0));
        fence.close(&[("t".into(), 0), ("t".into(), 1)]);
        assert!(other.is_closed("t", 0), "clones share the set");
        assert!(!other.is_closed("t", 2));
        fence.open(&[("t".into(), 0)]);
        assert!(!other.is_closed("t", 0));
        assert!(other.is_closed("t", 1));
    }

    #[test]
    fn work_tokens_count_per_partition_until_dropped() {
        let fence = Fence::default();
        let a = fence.begin("t", 0);
        let b = fence.begin("t", 0);
        let c = fence.begin("t", 1);
        assert_eq!(fence.busy(&[("t".into(), 0)]), 2);
        assert_eq!(fence.busy(&[("t".into(), 0), ("t".into(), 1)]), 3);
        drop(a);
        drop(c);
        assert_eq!(fence.busy(&[("t".into(), 0), ("t".into(), 1)]), 1);
        drop(b);
        assert_eq!(fence.busy(&[("t".into(), 0)]), 0);
    }

    #[test]
    fn waiting_returns_when_the_last_token_of_the_partitions_drops() {
        let fence = Fence::default();
        fence.set_drain(Duration::from_secs(30));
        let work = fence.begin("t", 0);
        let _other_partition = fence.begin("t", 1);
        let settle = std::thread::spawn(move || {
            // The waiter is parked on the condition variable by then or
            // sees the count already at zero; both end the wait.
            drop(work);
        });
        let started = Instant::now();
        let left = fence.wait_idle(&[("t".into(), 0)]);
        settle.join().expect("the settling thread");
        assert_eq!(left, 0);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn waiting_gives_up_after_the_drain_time_and_says_what_is_left() {
        let fence = Fence::default();
        fence.set_drain(Duration::from_millis(50));
        let _stuck = fence.begin("t", 0);
        let started = Instant::now();
        assert_eq!(fence.wait_idle(&[("t".into(), 0)]), 1);
        assert!(started.elapsed() >= Duration::from_millis(50));
        fence.set_drain(Duration::ZERO);
        assert_eq!(fence.wait_idle(&[("t".into(), 0)]), 1, "zero: no wait");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_current_thread_runtime_does_not_block() {
        assert_eq!(block_while_draining(|| 7), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_multi_threaded_runtime_blocks_in_place() {
        assert_eq!(block_while_draining(|| 7), Some(7));
    }

    #[test]
    fn outside_a_runtime_it_blocks() {
        assert_eq!(block_while_draining(|| 7), Some(7));
    }
}
