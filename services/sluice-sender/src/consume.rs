//! The consumer: reads the pool's outbound topic and its delay tiers and
//! hands each message to routing (static table, then DNS, off this path:
//! [`crate::routing`]), which hands it to the dispatcher.
//!
//! Memory is bounded: the consumer stops reading while `queues.max_in_flight`
//! records have no durable fate. A delay-tier record still held
//! (`hold_until`: written at most one tier delay ahead, so a tier's holds
//! are in order) pauses its partition until its hold ends, so waiting mail
//! occupies Kafka, not memory; a record whose hold ended before it is due
//! hops to the tier that fits the time left. A message on the outbound
//! topic scheduled for later is moved to the delay tier that fits its wait
//! (hops until it is due) rather than pausing the outbound partition.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use sluice_log::LogConsumer;
use sluice_log::{Delivery, GroupConsumer};
use sluice_proto::v1::{BounceClass, Envelope, SmtpReply};
use sluice_shaping::{Millis, SiteResolver};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::SenderConfig;
use crate::dispatch::{Intake, RecordRef};
use crate::fate::{self, synthetic};
use crate::fate_index::FateIndex;
use crate::offsets::{OffsetTracker, Reached};
use crate::route::Router;
use crate::routing::{self, Routing};
use crate::wake::{self, Wake};
use crate::waking::Waking;

/// A message on the outbound topic due later than this is moved to a delay
/// tier instead of pausing the partition until it is due.
const PARK_AT_MOST: u64 = 1_000;

pub struct Consume {
    pub cfg: Arc<SenderConfig>,
    routing: Routing,
    pub tracker: Arc<Mutex<OffsetTracker>>,
    pub intake: UnboundedSender<Intake>,
    pub(crate) parked: HashMap<(String, i32), VecDeque<Parked>>,
    /// Counts the turns of [`Consume::release_due`] (which paused
    /// partition goes first).
    turn: usize,
    pub(crate) index: Option<Arc<FateIndex>>,
    /// The pool's outbound topic (scheduled records there move to a tier).
    pub(crate) outbound: String,
    /// Where the group's lag in this node's partitions is shown.
    lag: Option<sluice_node::metrics::PartitionGauges>,
    /// Waking parked mail when its site's limits change ([`crate::wake`]).
    pub(crate) waking: Option<Waking>,
}

/// What one turn of the consumer's loop brought.
enum Turn {
    Records(Result<Vec<Delivery>, sluice_log::LogError>),
    Wake(Wake),
    Early(wake::Early),
}

/// A delay-tier record waiting for its `not_before`, with its due time.
pub(crate) type Parked = (RecordRef, Envelope, Millis);

impl Consume {
    pub fn new(
        cfg: Arc<SenderConfig>,
        router: Router,
        sites: SiteResolver,
        tracker: Arc<Mutex<OffsetTracker>>,
        intake: UnboundedSender<Intake>,
    ) -> Self {
        let outbound = cfg.outbound_topic();
        Self {
            cfg,
            routing: Routing::new(router, sites, intake.clone()),
            tracker,
            intake,
            parked: HashMap::new(),
            turn: 0,
            index: None,
            outbound,
            lag: None,
            waking: None,
        }
    }

    /// Releases parked mail early when the dispatcher says its site's
    /// policy changed ([`Waking`]).
    pub(crate) fn with_wakes(mut self, waking: Waking) -> Self {
        self.waking = Some(waking);
        self
    }

    /// Measures the group's lag in the partitions this node owns into
    /// `gauges`, every few seconds, in a task of its own.
    pub(crate) fn with_lag(mut self, gauges: sluice_node::metrics::PartitionGauges) -> Self {
        self.lag = Some(gauges);
        self
    }

    /// Applies MTA-STS policies to DNS routes ([`crate::mta_sts`]).
    pub(crate) fn with_mta_sts(mut self, mta_sts: Option<Arc<crate::mta_sts::MtaSts>>) -> Self {
        self.routing = self.routing.with_mta_sts(mta_sts);
        self
    }

    /// Skips records the fate index names, and loads it for each partition
    /// assigned to this node before reading the partition's records.
    pub(crate) fn with_index(mut self, index: Arc<FateIndex>) -> Self {
        self.index = Some(index);
        self
    }

    /// Consumes until `shutdown` resolves. Parked records are dropped
    /// uncommitted: they are read again by the partition's next owner.
    pub async fn run(mut self, consumer: &mut LogConsumer, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let interval = Duration::from_millis(self.cfg.kafka.commit_interval.0.max(50));
        let mut last_commit = tokio::time::Instant::now();
        loop {
            self.release_due(consumer);
            if last_commit.elapsed() >= interval {
                self.commit(consumer).await;
                last_commit = tokio::time::Instant::now();
            }
            let full = self.in_flight() >= self.cfg.queues.max_in_flight;
            let waking = self.waking.as_mut();
            let (changes, early) = match waking {
                Some(w) => (Some(&mut w.changes), Some(&mut w.early.1)),
                None => (None, None),
            };
            let turn = tokio::select! {
                _ = &mut shutdown => break,
                polled = consumer.poll(Duration::from_millis(50)), if !full => Turn::Records(polled),
                _ = tokio::time::sleep(Duration::from_millis(50)), if full => Turn::Records(Ok(Vec::new())),
                Some(wake) = next(changes.map(|rx| rx.recv())) => Turn::Wake(wake),
                Some(early) = next(early.map(|rx| rx.recv())) => Turn::Early(early),
            };
            self.rebalances(consumer).await;
            if let Some(lag) = &self.lag {
                lag.refresh(|| consumer.lag());
            }
            match turn {
                Turn::Records(Ok(records)) => {
                    for record in records {
                        self.handle(consumer, record);
                    }
                }
                Turn::Records(Err(err)) => {
                    tracing::warn!(%err, "message log read failed; retrying (check that the log is reachable)");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Turn::Wake(wake) => self.wake(wake),
                Turn::Early(early) => {
                    let (rec, envelope) = *early;
                    self.taken_early(rec, envelope);
                }
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.tracker
            .lock()
            .expect("offset tracker lock")
            .in_flight()
    }

    fn handle(&mut self, consumer: &mut LogConsumer, msg: Delivery) {
        let rec = RecordRef {
            topic: msg.topic,
            partition: msg.partition,
            offset: msg.offset,
            trace: record_trace(&msg.headers),
        };
        tracing::trace!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, "record");
        let reached = self.tracker.lock().expect("offset tracker lock").start(
            &rec.topic,
            rec.partition,
            rec.offset,
        );
        if reached != Reached::Fresh {
            // Taken early for a woken site: its early handling settles it.
            tracing::trace!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, ?reached, "taken early");
            return;
        }
        if self.index.as_ref().is_some_and(|i| i.is_settled(&rec)) {
            tracing::debug!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, "skipped: its fate is already durable (fate index)");
            self.tracker.lock().expect("offset tracker lock").finish(
                &rec.topic,
                rec.partition,
                rec.offset,
            );
            return;
        }
        let envelope = match Envelope::decode(msg.payload.as_slice()) {
            Ok(envelope) => envelope,
            Err(err) => return self.malformed(rec, &err.to_string()),
        };
        if envelope.pool != self.cfg.pool {
            let reply = synthetic(
                554,
                "5.3.5",
                format!(
                    "envelope names pool `{}` but this sender serves pool `{}`",
                    envelope.pool, self.cfg.pool
                ),
            );
            tracing::warn!(message_id = %envelope.message_id, topic = %rec.topic, offset = rec.offset, "{}", reply.text);
            return self.final_(rec, envelope, reply, BounceClass::OtherPermanent);
        }
        if self.is_woken(&envelope) {
            return self.woken_read(consumer, rec, envelope);
        }
        let due = fate::millis(&envelope.not_before).unwrap_or(Millis(0));
        let key = (rec.topic.clone(), rec.partition);
        let already_parked = self.parked.get(&key).is_some_and(|q| !q.is_empty());
        let now = fate::now();
        if !already_parked
            && rec.topic == self.outbound
            && due.0 > now.0.saturating_add(PARK_AT_MOST)
        {
            // Scheduled: it waits in a delay tier, not in front of the
            // partition's later mail.
            return self.send(Intake::Schedule { rec, envelope });
        }
        // A tier record is held until its hop ends (a scheduled message's
        // `hold_until`) or it is due.
        let hold = fate::millis(&envelope.hold_until).unwrap_or(due);
        if already_parked || hold > now {
            if !already_parked {
                consumer.pause(&rec.topic, rec.partition);
                self.paused(&key);
            }
            self.parked
                .entry(key)
                .or_default()
                .push_back((rec, envelope, hold));
            return;
        }
        self.next_step(rec, envelope);
    }

    /// A record whose hold is over: another hop while it is not due yet,
    /// else on its way.
    fn next_step(&mut self, rec: RecordRef, envelope: Envelope) {
        let due = fate::millis(&envelope.not_before).unwrap_or(Millis(0));
        if due > fate::now() {
            return self.send(Intake::Schedule { rec, envelope });
        }
        self.route(rec, envelope);
    }

    /// Hands over parked records that are due, in order (woken ones first,
    /// as room allows: the records taken early, then each paused
    /// partition's front, starting one partition further each time, so
    /// partitions holding woken mail of one site share its room); resumes
    /// a partition whose parked records are all gone.
    fn release_due(&mut self, consumer: &mut LogConsumer) {
        self.release_held();
        let now = fate::now();
        let mut keys: Vec<_> = self.parked.keys().cloned().collect();
        keys.sort_unstable();
        if !keys.is_empty() {
            self.turn = self.turn.wrapping_add(1);
            let first = self.turn % keys.len();
            keys.rotate_left(first);
        }
        for key in keys {
            while self.release_front(consumer, &key, now) {}
        }
    }

    /// Lets the front of `key`'s parked records go if it may; `false` when
    /// it stays (or the queue is empty, and the partition resumes).
    fn release_front(
        &mut self,
        consumer: &mut LogConsumer,
        key: &(String, i32),
        now: Millis,
    ) -> bool {
        let front = self.parked.get(key).and_then(VecDeque::front);
        let Some((woken, due, site)) = front.map(|(_, envelope, due)| {
            let woken = self.is_woken(envelope);
            (woken, *due, woken.then(|| envelope.site.clone()))
        }) else {
            self.parked.remove(key);
            self.unstuck(key);
            consumer.resume(&key.0, key.1);
            return false;
        };
        let go = match site {
            Some(site) => self.front_may_go(key, &site),
            None => due <= now,
        };
        if !go {
            return false;
        }
        let queue = self.parked.get_mut(key).expect("the queue has a front");
        let (rec, envelope, _) = queue.pop_front().expect("the queue has a front");
        if woken {
            self.release(rec, envelope);
        } else {
            self.next_step(rec, envelope);
        }
        true
    }

    pub(crate) fn route(&mut self, rec: RecordRef, envelope: Envelope) {
        let Some(domain) = fate::recipient_domain(&envelope.recipient) else {
            let reply = synthetic(
                553,
                "5.1.3",
                format!("recipient `{}` is not a valid address", envelope.recipient),
            );
            return self.final_(rec, envelope, reply, BounceClass::BadMailbox);
        };
        self.routing.route(rec, envelope, domain);
    }

    fn malformed(&self, rec: RecordRef, error: &str) {
        let message_id = format!("kafka:{}/{}/{}", rec.topic, rec.partition, rec.offset);
        tracing::warn!(%message_id, %error, "malformed envelope: bounced without delivery; fix the producer of this topic");
        let envelope = Envelope {
            message_id,
            pool: self.cfg.pool.clone(),
            ..Default::default()
        };
        let reply = synthetic(554, "5.6.0", format!("malformed envelope: {error}"));
        self.final_(rec, envelope, reply, BounceClass::OtherPermanent);
    }

    fn final_(&self, rec: RecordRef, envelope: Envelope, reply: SmtpReply, class: BounceClass) {
        self.send(routing::bounced(rec, envelope, reply, class));
    }

    pub(crate) fn send(&self, intake: Intake) {
        routing::send(&self.intake, intake);
    }
}

/// What `next` yields (a channel's next item); never, without a channel.
async fn next<T>(next: Option<impl Future<Output = Option<T>>>) -> Option<T> {
    match next {
        Some(next) => next.await,
        None => std::future::pending().await,
    }
}

/// The `traceparent` a record carries, when this node exports traces.
pub(crate) fn record_trace(headers: &[(String, Vec<u8>)]) -> Option<String> {
    if !sluice_node::trace::enabled() {
        return None;
    }
    let value = sluice_log::header(headers, sluice_node::trace::HEADER)?;
    String::from_utf8(value.to_vec()).ok()
}

/// Commits every partition's offset that moved, then the fate index
/// positions those commits make obsolete (never before: a fate position
/// ahead of a commit that did not happen would hide settled records).
pub async fn commit(consumer: &mut LogConsumer, tracker: &Mutex<OffsetTracker>, index: &FateIndex) {
    let commits = commit_offsets(consumer, tracker).await;
    index.commit(&commits).await;
}

/// Commits every partition's offset that moved; returns the commits made.
pub async fn commit_offsets(
    consumer: &mut LogConsumer,
    tracker: &Mutex<OffsetTracker>,
) -> Vec<sluice_log::Commit> {
    let commits = tracker.lock().expect("offset tracker lock").take_commits();
    if commits.is_empty() {
        return commits;
    }
    match consumer.commit(&commits).await {
        Ok(()) => commits,
        Err(err) => {
            tracing::warn!(%err, "offset commit failed; the next commit after more progress covers it (until then a restart re-reads these records)");
            Vec::new()
        }
    }
}
