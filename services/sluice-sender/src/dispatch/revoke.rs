//! Revoked partitions: their queued messages leave the dispatcher without a
//! fate (docs/fate-index.md, "Assignment and revocation").

use tokio::sync::oneshot;

use super::{Dispatcher, RecordRef};

/// Revoked partitions: their queued messages are dropped (no fate; the next
/// owner reads them) and the dropped records are answered on `dropped`.
pub struct Revocation {
    pub partitions: Vec<(String, i32)>,
    pub dropped: oneshot::Sender<Vec<RecordRef>>,
}

impl Dispatcher {
    pub(super) fn revoke(&mut self, revocation: Revocation) {
        let dropped = self.drop_queued(&revocation.partitions);
        let _ = revocation.dropped.send(dropped);
    }

    /// Removes the queued messages of `partitions`; returns their records.
    pub(super) fn drop_queued(&mut self, partitions: &[(String, i32)]) -> Vec<RecordRef> {
        let mut dropped = Vec::new();
        for site in &mut self.sites {
            site.queue.retain(|q| {
                let revoked = partitions
                    .iter()
                    .any(|(t, p)| *t == q.rec.topic && *p == q.rec.partition);
                if revoked {
                    dropped.push(q.rec.clone());
                }
                !revoked
            });
        }
        self.queued -= dropped.len();
        dropped
    }
}
