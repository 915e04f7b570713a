//! Partition changes of the consumer group (docs/fate-index.md).
//!
//! - Assigned: the fate index of each new partition is loaded before any of
//!   its records is handled, so records that already have a durable fate are
//!   skipped.
//! - Revoked: no new delivery starts for the partitions' records: parked and
//!   queued ones are dropped without a fate (the next owner reads them, the
//!   commit stays below them); deliveries in progress finish within
//!   `drain_timeout`, their fates are published and the offsets committed.

use std::time::Duration;

use sluice_log::{GroupConsumer, LogConsumer, Rebalance};

use crate::consume::{Consume, commit};
use crate::dispatch::{Intake, RecordRef, Revocation};

impl Consume {
    /// Handles the rebalance events since the last poll, in order.
    pub(crate) async fn rebalances(&mut self, consumer: &mut LogConsumer) {
        for event in consumer.rebalances() {
            match event {
                Rebalance::Assigned(partitions) => {
                    tracing::info!(?partitions, "consuming these partitions now");
                    if let Some(index) = &self.index {
                        index.load(&partitions).await;
                    }
                }
                Rebalance::Revoked(partitions) => {
                    tracing::info!(
                        ?partitions,
                        "partitions revoked (group rebalance); finishing their deliveries in progress"
                    );
                    self.revoke(consumer, &partitions).await;
                }
            }
        }
    }

    /// Commits the offsets that moved and the fate positions they free.
    pub(crate) async fn commit(&self, consumer: &mut LogConsumer) {
        match &self.index {
            Some(index) => commit(consumer, &self.tracker, index).await,
            None => {
                crate::consume::commit_offsets(consumer, &self.tracker).await;
            }
        }
    }

    async fn revoke(&mut self, consumer: &mut LogConsumer, partitions: &[(String, i32)]) {
        let mut dropped: Vec<RecordRef> = Vec::new();
        for key in partitions {
            if let Some(parked) = self.parked.remove(key) {
                dropped.extend(parked.into_iter().map(|(rec, _, _)| rec));
            }
            self.unstuck(key);
        }
        dropped.extend(self.drop_held(partitions));
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Intake::Revoke(Revocation {
            partitions: partitions.to_vec(),
            dropped: tx,
        }));
        dropped.extend(rx.await.unwrap_or_default());
        {
            let mut tracker = self.tracker.lock().expect("offset tracker lock");
            for rec in &dropped {
                tracker.abandon(&rec.topic, rec.partition, rec.offset);
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from(self.cfg.drain_timeout);
        while self.in_flight_of(partitions) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.in_flight_of(partitions);
        self.commit(consumer).await;
        let mut tracker = self.tracker.lock().expect("offset tracker lock");
        for (topic, partition) in partitions {
            tracker.revoke(topic, *partition);
            if let Some(index) = &self.index {
                index.revoke(topic, *partition);
            }
        }
        tracing::info!(
            dropped = dropped.len(),
            abandoned_in_progress = left,
            "revoked partitions released (dropped records go to their next owner)"
        );
    }

    fn in_flight_of(&self, partitions: &[(String, i32)]) -> usize {
        let tracker = self.tracker.lock().expect("offset tracker lock");
        partitions
            .iter()
            .map(|(t, p)| tracker.in_flight_of(t, *p))
            .sum()
    }
}

#[cfg(test)]
#[path = "rebalance_tests.rs"]
mod tests;
