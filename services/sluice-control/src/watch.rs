//! The Watch stream: every logged change after the watcher's revision, in
//! order, then each new change as it is committed.
//!
//! The stream reads the store's change log, never an in-memory copy: a
//! watcher that falls behind simply reads more of the log. It wakes when
//! this process commits a change and, to see changes made by another
//! control process on the same CQL keyspace, at least every
//! [`POLL_INTERVAL`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use sluice_node::CancellationToken;
use sluice_proto::v1::ConfigChange;
use tokio::sync::watch;
use tonic::Status;

use crate::store::ConfigStore;

/// Longest wait before the log is read again without a local change.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Changes read from the log at a time.
const BATCH: usize = 256;

struct State {
    store: Arc<dyn ConfigStore>,
    last: u64,
    pending: VecDeque<ConfigChange>,
    head: watch::Receiver<u64>,
    stop: CancellationToken,
    failed: bool,
}

/// Changes after `after`, until `stop` is cancelled or the client goes away.
pub fn changes(
    store: Arc<dyn ConfigStore>,
    after: u64,
    head: watch::Receiver<u64>,
    stop: CancellationToken,
) -> impl Stream<Item = Result<ConfigChange, Status>> + Send {
    let state = State {
        store,
        last: after,
        pending: VecDeque::new(),
        head,
        stop,
        failed: false,
    };
    futures::stream::unfold(state, next)
}

async fn next(mut s: State) -> Option<(Result<ConfigChange, Status>, State)> {
    if s.failed {
        return None;
    }
    loop {
        if s.stop.is_cancelled() {
            return None;
        }
        if let Some(change) = s.pending.pop_front() {
            s.last = change.revision;
            return Some((Ok(change), s));
        }
        // Marked seen before reading, so a commit after the read wakes us.
        s.head.borrow_and_update();
        match s.store.changes_after(s.last, BATCH).await {
            Ok(found) if !found.is_empty() => {
                s.pending.extend(found);
                continue;
            }
            Ok(_) => {}
            Err(err) => {
                s.failed = true;
                return Some((Err(err.into()), s));
            }
        }
        tokio::select! {
            _ = s.head.changed() => {}
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            () = s.stop.cancelled() => return None,
        }
    }
}
