//! Group commit: concurrent single-record appends share one durable batch
//! (one fsync) instead of paying one fsync each. The first append that finds
//! no flusher running starts one on the blocking pool; the flusher writes
//! whatever is queued, answers every caller, and repeats until the queue is
//! empty.

use tokio::sync::oneshot;

use super::EmbeddedLog;
use crate::{LogError, NewRecord, Position};

/// Most records in one shared batch.
const MAX_GROUP: usize = 2_000;

/// An append waiting for the flusher.
pub(super) struct Pending {
    record: NewRecord,
    done: oneshot::Sender<Result<Position, LogError>>,
}

/// Appends waiting for the flusher, and whether one is running.
#[derive(Default)]
pub(super) struct Queue {
    waiting: Vec<Pending>,
    flushing: bool,
}

impl EmbeddedLog {
    /// Queues an append; true when the caller must start the flusher.
    pub(super) fn enqueue(
        &self,
        record: NewRecord,
        done: oneshot::Sender<Result<Position, LogError>>,
    ) -> bool {
        let mut queue = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.waiting.push(Pending { record, done });
        !std::mem::replace(&mut queue.flushing, true)
    }

    /// Writes queued appends in shared batches until none is left.
    pub(super) fn flush_pending(&self) {
        loop {
            let group = {
                let mut queue = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
                if queue.waiting.is_empty() {
                    queue.flushing = false;
                    return;
                }
                let take = queue.waiting.len().min(MAX_GROUP);
                queue.waiting.drain(..take).collect::<Vec<_>>()
            };
            let (records, answers): (Vec<_>, Vec<_>) =
                group.into_iter().map(|p| (p.record, p.done)).unzip();
            match self.append_batch_blocking(&records) {
                Ok(positions) => {
                    for (done, position) in answers.into_iter().zip(positions) {
                        let _ = done.send(Ok(position));
                    }
                }
                Err(err) => {
                    let text = err.to_string();
                    tracing::warn!(error = %text, records = records.len(), "a shared append batch failed");
                    for done in answers {
                        let _ = done.send(Err(LogError::Internal(format!(
                            "a shared append batch failed: {text}"
                        ))));
                    }
                }
            }
        }
    }
}
