//! The consumer's side of waking parked mail ([`crate::wake`]).
//!
//! Woken records go at the pace their site takes them. At most a site
//! queue's worth (`queues.max_per_site`) of the woken records this consumer
//! reads is in flight at once; the read-ahead keeps the same number of its
//! own. A woken record beyond that waits at the front of its tier
//! partition, which pauses. So a raised limit does not pour a whole backlog
//! into a queue that overflows and parks it once more.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sluice_log::{GroupConsumer, LogConsumer};
use sluice_proto::v1::Envelope;
use sluice_shaping::{Millis, Span};
use tokio::sync::mpsc;

use crate::consume::Consume;
use crate::dispatch::RecordRef;
use crate::fate;
use crate::wake::{self, Wake, Wakes};

/// What the consumer keeps to wake parked mail.
pub(crate) struct Waking {
    log: sluice_log::Log,
    pub(crate) changes: mpsc::UnboundedReceiver<Wake>,
    wakes: Wakes,
    pub(crate) early: (mpsc::Sender<wake::Early>, mpsc::Receiver<wake::Early>),
    reading: tokio::task::JoinSet<()>,
    woken: prometheus_client::metrics::counter::Counter,
    /// The delay of each tier topic.
    tiers: Arc<HashMap<String, Span>>,
    /// Bumped by every change; a partition is read ahead once per value.
    generation: u64,
    read: HashMap<(String, i32), u64>,
    /// Woken records released from the reading position that may still be
    /// in flight: (topic, partition, offset).
    released: Vec<(String, i32, i64)>,
    /// How many more may go before `released` is counted again.
    budget: usize,
}

impl Waking {
    /// Reads tier partitions (`tiers`: topic and delay) ahead through
    /// `log`; `changes` brings the sites' changes, `woken` counts releases.
    pub(crate) fn new(
        (log, tiers): (sluice_log::Log, HashMap<String, Span>),
        changes: mpsc::UnboundedReceiver<Wake>,
        woken: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Self {
            log,
            changes,
            wakes: Wakes::default(),
            early: mpsc::channel(64),
            reading: tokio::task::JoinSet::new(),
            woken,
            tiers: Arc::new(tiers),
            generation: 0,
            read: HashMap::new(),
            released: Vec::new(),
            budget: 0,
        }
    }
}

impl Consume {
    /// Whether `envelope` was parked for its site before the site's latest
    /// change.
    pub(crate) fn is_woken(&self, envelope: &Envelope) -> bool {
        self.waking
            .as_ref()
            .is_some_and(|w| w.wakes.woken(envelope))
    }

    /// Records `wake`, moves the site's parked mail held here to the front
    /// of its partition's queue (where [`Consume::release_due`] lets it go
    /// as room allows), and reads the paused tier partitions ahead.
    pub(crate) fn wake(&mut self, wake: Wake) {
        let Some(waking) = self.waking.as_mut() else {
            return;
        };
        waking.wakes.add(&wake);
        waking.generation += 1;
        let mut held = 0;
        for queue in self.parked.values_mut() {
            let (woken, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(queue)
                .into_iter()
                .partition(|(_, envelope, _)| waking.wakes.woken(envelope));
            held += woken.len();
            *queue = woken;
            queue.extend(kept);
        }
        let partitions: Vec<_> = self
            .parked
            .keys()
            .filter(|(topic, _)| *topic != self.outbound)
            .cloned()
            .collect();
        if held > 0 {
            tracing::info!(site = %wake.site, held, partitions = partitions.len(), "releasing the site's parked mail");
        }
        self.read_ahead(partitions);
    }

    /// A woken record at the reading position: on its way when there is
    /// room, else held at the front of its partition, which pauses.
    pub(crate) fn woken_read(
        &mut self,
        consumer: &mut LogConsumer,
        rec: RecordRef,
        envelope: Envelope,
    ) {
        if self.room() {
            return self.release_read(rec, envelope);
        }
        let key = (rec.topic.clone(), rec.partition);
        let queue = self.parked.entry(key.clone()).or_default();
        let paused = !queue.is_empty();
        queue.push_front((rec, envelope, Millis(0)));
        if !paused {
            consumer.pause(&key.0, key.1);
            self.paused(&key);
        }
    }

    /// A woken record from the reading position goes; it takes room until
    /// its fate is durable.
    pub(crate) fn release_read(&mut self, rec: RecordRef, envelope: Envelope) {
        if let Some(waking) = self.waking.as_mut() {
            waking
                .released
                .push((rec.topic.clone(), rec.partition, rec.offset));
        }
        self.release(rec, envelope);
    }

    /// Whether one more woken record may go (and takes its room): fewer
    /// than a site queue's worth of those released from the reading
    /// position and of those taken early are in flight.
    pub(crate) fn room(&mut self) -> bool {
        let Some(waking) = self.waking.as_mut() else {
            return true;
        };
        if waking.budget == 0 {
            let tracker = self.tracker.lock().expect("offset tracker lock");
            waking.released.retain(|(topic, partition, offset)| {
                tracker.is_in_flight(topic, *partition, *offset)
            });
            let live = waking.released.len() + tracker.early_in_flight();
            waking.budget = self.cfg.queues.max_per_site.max(1).saturating_sub(live);
        }
        let room = waking.budget > 0;
        waking.budget = waking.budget.saturating_sub(1);
        room
    }

    /// Reads `partitions` ahead for woken mail, each once per change.
    fn read_ahead(&mut self, mut partitions: Vec<(String, i32)>) {
        let Some(waking) = self.waking.as_mut() else {
            return;
        };
        while waking.reading.try_join_next().is_some() {}
        let generation = waking.generation;
        partitions.retain(|key| waking.read.insert(key.clone(), generation) != Some(generation));
        if partitions.is_empty() {
            return;
        }
        let ahead = wake::ReadAhead {
            log: waking.log.clone(),
            tracker: self.tracker.clone(),
            index: self.index.clone(),
            wakes: waking.wakes.clone(),
            cap: self.cfg.queues.max_per_site.max(1),
            tiers: waking.tiers.clone(),
            out: waking.early.0.clone(),
        };
        waking.reading.spawn(wake::read_ahead(ahead, partitions));
    }

    /// A tier partition was paused: mail parked behind its head may have
    /// been woken by a change within the longest hold (one made before
    /// this node started or took the partition, too), so it is read ahead.
    pub(crate) fn paused(&mut self, key: &(String, i32)) {
        let Some(latest) = self.waking.as_ref().and_then(|w| w.wakes.latest()) else {
            return;
        };
        let recent = fate::now().since(latest) <= self.cfg.queues.max_overflow_hold;
        if recent && key.0 != self.outbound {
            self.read_ahead(vec![key.clone()]);
        }
    }

    /// A woken record: due now, on its way.
    pub(crate) fn release(&mut self, rec: RecordRef, mut envelope: Envelope) {
        wake::release(&mut envelope);
        if let Some(waking) = &self.waking {
            waking.woken.inc();
        }
        self.route(rec, envelope);
    }
}

#[cfg(test)]
#[path = "waking_tests.rs"]
mod tests;
