//! The consumer context of a Kafka group member: rdkafka calls its
//! rebalance hooks from inside the member's own poll, and they turn
//! assignments and revocations into [`Rebalance`] events on a tokio channel
//! that [`super::KafkaConsumer`] reads.
//!
//! Revocation timing: `pre_rebalance` closes the member's [`Fence`] for the
//! revoked partitions at once (other tasks check it before starting work),
//! waits for the work begun on them to settle (up to the fence's drain
//! time), then queues the event. It runs before librdkafka gives the
//! partitions up, on the task that polls. So everything the caller committed
//! before that poll is durable before the partitions move; records it read
//! and did not commit yet are read again by their next owner (at least
//! once). The event reaches the caller right after (the poll returns at
//! once), and commits for revoked partitions fail from then on.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;

use crate::{Fence, Rebalance};

/// Sends a member's rebalances to its [`super::KafkaConsumer`].
pub(super) struct RebalanceContext {
    group: String,
    events: UnboundedSender<Rebalance>,
    fence: Fence,
}

impl RebalanceContext {
    pub(super) fn new(group: &str, events: UnboundedSender<Rebalance>, fence: Fence) -> Self {
        Self {
            group: group.to_owned(),
            events,
            fence,
        }
    }

    /// Waits, before librdkafka gives `revoked` up, for the work begun on
    /// them to settle (its fates published), so their next owner's fate
    /// index already holds those fates.
    fn drain(&self, revoked: &[(String, i32)]) {
        let busy = self.fence.busy(revoked);
        if busy == 0 {
            return;
        }
        let started = std::time::Instant::now();
        match crate::fence::block_while_draining(|| self.fence.wait_idle(revoked)) {
            Some(0) => tracing::info!(
                group = %self.group, settled = busy, waited_ms = started.elapsed().as_millis() as u64,
                "work in progress on the revoked partitions settled before giving them up"
            ),
            Some(left) => tracing::warn!(
                group = %self.group, left,
                "the drain time passed with work still in progress on revoked partitions; their next owner may deliver those records again (raise `drain_timeout` if deliveries take longer)"
            ),
            None => tracing::debug!(
                group = %self.group, busy,
                "single-threaded runtime: revoked partitions are given up without waiting for their work"
            ),
        }
    }

    fn send(&self, event: Rebalance) {
        tracing::debug!(group = %self.group, ?event, "Kafka rebalance");
        // The receiver is gone only while the member is being dropped.
        let _ = self.events.send(event);
    }
}

/// The sorted (topic, partition) pairs of a partition list.
pub(super) fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    let mut out: Vec<(String, i32)> = tpl
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    out.sort();
    out
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        if let rdkafka::consumer::Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions(tpl);
            // Closed before librdkafka gives the partitions up: the member's
            // other tasks stop starting work on them now, not when the event
            // is polled.
            self.fence.close(&revoked);
            self.drain(&revoked);
            self.send(Rebalance::Revoked(revoked));
        }
    }

    fn post_rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        match rebalance {
            rdkafka::consumer::Rebalance::Assign(tpl) => {
                // librdkafka keeps a partition's pause across a revocation:
                // one paused here, revoked and assigned back to this member
                // would never be read again, while the member (which forgot
                // it at the revocation) never resumes it. Every assignment
                // starts unpaused, as on a member that never had it.
                if let Err(err) = consumer.resume(tpl) {
                    tracing::warn!(group = %self.group, %err, "could not resume newly assigned partitions");
                }
                let assigned = partitions(tpl);
                self.fence.open(&assigned);
                self.send(Rebalance::Assigned(assigned));
            }
            rdkafka::consumer::Rebalance::Revoke(_) => {}
            rdkafka::consumer::Rebalance::Error(err) => {
                tracing::warn!(group = %self.group, %err, "Kafka rebalance failed; the group retries");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_lists_become_sorted_pairs() {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("b", 1);
        tpl.add_partition("a", 2);
        tpl.add_partition("a", 0);
        assert_eq!(
            partitions(&tpl),
            [("a".into(), 0), ("a".into(), 2), ("b".into(), 1)]
        );
    }
}
