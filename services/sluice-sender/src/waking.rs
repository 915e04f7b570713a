//! The consumer's side of waking parked mail ([`crate::wake`]).
//!
//! Woken records go at the pace their site takes them: into the room its
//! ready queues have left ([`SiteQueues`], counted by the dispatcher every
//! 200 ms), once per count. A woken record read at the reading position
//! that finds no room waits at the front of its tier partition, which
//! pauses, while its site drains (or [`STUCK_AT_MOST`] if the site lets
//! none go); the paused partitions take turns at the room. One taken early
//! by the read-ahead waits here, and the read-ahead stops at
//! `queues.max_per_site` of those. So a raised limit does not pour a whole
//! backlog into a queue that overflows and parks it once more.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sluice_log::{GroupConsumer, LogConsumer};
use sluice_proto::v1::Envelope;
use sluice_shaping::{Millis, Span};
use tokio::sync::mpsc;

use crate::consume::Consume;
use crate::dispatch::RecordRef;
use crate::fate;
use crate::wake::{self, SiteQueues, Wake, Wakes};

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
    /// The sites' queued messages, as the dispatcher counts them.
    queues: Arc<SiteQueues>,
    /// Per site: the count last seen, and how many more may go before the
    /// next one.
    room: HashMap<String, (u64, usize)>,
    /// Records taken early that found no room yet.
    held: VecDeque<(RecordRef, Envelope)>,
    /// Paused partitions whose front is a woken record without room, and
    /// since when.
    stuck: HashMap<(String, i32), std::time::Instant>,
    /// When each site last let a woken record go.
    last_room: HashMap<String, std::time::Instant>,
}

/// The longest a woken record holds its paused tier partition while its
/// site lets no woken record go (a change that did not raise the site's
/// limits). Then the partition's woken records go anyway, overflow and are
/// parked again by the site's rate, so the partition's other mail is not
/// held up. While the site drains, the partition waits its turn.
const STUCK_AT_MOST: std::time::Duration = std::time::Duration::from_secs(10);

impl Waking {
    /// Reads tier partitions (`tiers`: topic and delay) ahead through
    /// `log`; `changes` brings the sites' changes, `woken` counts releases.
    pub(crate) fn new(
        (log, tiers): (sluice_log::Log, HashMap<String, Span>),
        (changes, queues): (mpsc::UnboundedReceiver<Wake>, Arc<SiteQueues>),
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
            queues,
            room: HashMap::new(),
            held: VecDeque::new(),
            stuck: HashMap::new(),
            last_room: HashMap::new(),
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

    /// A woken record at the reading position: on its way when its site
    /// has room, else held at the front of its partition, which pauses.
    pub(crate) fn woken_read(
        &mut self,
        consumer: &mut LogConsumer,
        rec: RecordRef,
        envelope: Envelope,
    ) {
        if self.room(&envelope.site) {
            return self.release(rec, envelope);
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

    /// A record the read-ahead took: on its way when its site has room,
    /// else held until it has. One whose partition was revoked after the
    /// read-ahead took it is left to the partition's next owner.
    pub(crate) fn taken_early(&mut self, rec: RecordRef, envelope: Envelope) {
        let tracker = self.tracker.lock().expect("offset tracker lock");
        if !tracker.is_early(&rec.topic, rec.partition, rec.offset) {
            tracing::debug!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, "taken early from a partition revoked since: its next owner reads it");
            return;
        }
        drop(tracker);
        if self.room(&envelope.site) {
            return self.release(rec, envelope);
        }
        if let Some(waking) = self.waking.as_mut() {
            waking.held.push_back((rec, envelope));
        }
    }

    /// Releases the records taken early as their sites get room, in the
    /// order they came.
    pub(crate) fn release_held(&mut self) {
        loop {
            let Some(site) = self
                .waking
                .as_ref()
                .and_then(|w| w.held.front())
                .map(|(_, envelope)| envelope.site.clone())
            else {
                return;
            };
            if !self.room(&site) {
                return;
            }
            let waking = self.waking.as_mut().expect("held records");
            let (rec, envelope) = waking.held.pop_front().expect("a front");
            self.release(rec, envelope);
        }
    }

    /// Whether the woken record at the front of paused partition `key` may
    /// go: when its site has room, or once it held the partition for
    /// [`STUCK_AT_MOST`] in which its site let no woken record go.
    pub(crate) fn front_may_go(&mut self, key: &(String, i32), site: &str) -> bool {
        if self.room(site) {
            self.unstuck(key);
            return true;
        }
        let Some(waking) = self.waking.as_mut() else {
            return true;
        };
        let since = waking
            .stuck
            .entry(key.clone())
            .or_insert_with(std::time::Instant::now);
        let draining = waking
            .last_room
            .get(site)
            .is_some_and(|t| t.elapsed() < STUCK_AT_MOST);
        since.elapsed() >= STUCK_AT_MOST && !draining
    }

    /// Forgets that paused partition `key` waited for room (its queue is
    /// empty).
    pub(crate) fn unstuck(&mut self, key: &(String, i32)) {
        if let Some(waking) = self.waking.as_mut() {
            waking.stuck.remove(key);
        }
    }

    /// Drops the records taken early from `partitions` that wait for room
    /// (the partitions were revoked: their next owner reads them).
    pub(crate) fn drop_held(&mut self, partitions: &[(String, i32)]) -> Vec<RecordRef> {
        let Some(waking) = self.waking.as_mut() else {
            return Vec::new();
        };
        let revoked = |rec: &RecordRef| {
            partitions
                .iter()
                .any(|(topic, partition)| *topic == rec.topic && *partition == rec.partition)
        };
        let (dropped, kept) = std::mem::take(&mut waking.held)
            .into_iter()
            .partition(|(rec, _)| revoked(rec));
        waking.held = kept;
        dropped.into_iter().map(|(rec, _)| rec).collect()
    }

    /// Whether one more woken record of `site` may go (and takes its room):
    /// each count of the site's queues lets as many go as its queues lack
    /// of `queues.max_per_site`.
    pub(crate) fn room(&mut self, site: &str) -> bool {
        let Some(waking) = self.waking.as_mut() else {
            return true;
        };
        let (count, queued) = waking.queues.queued(site);
        // A site seen for the first time takes the latest count.
        let room = waking.room.entry(site.to_owned()).or_insert((u64::MAX, 0));
        if room.0 != count {
            *room = (count, self.cfg.queues.max_per_site.saturating_sub(queued));
        }
        if room.1 == 0 {
            return false;
        }
        room.1 -= 1;
        let now = std::time::Instant::now();
        match waking.last_room.get_mut(site) {
            Some(last) => *last = now,
            None => {
                waking.last_room.insert(site.to_owned(), now);
            }
        }
        true
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
        let recent = fate::now().since(latest) <= self.cfg.longest_hold();
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
