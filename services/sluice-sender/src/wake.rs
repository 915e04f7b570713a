//! Waking parked mail when its site's limits change (docs/sender.md,
//! "Waking parked mail").
//!
//! A message that overflowed its site's full ready queue waits in a delay
//! tier until a slot computed from the site's drain rate, up to
//! `queues.max_overflow_hold`, and carries `parked_at` and its `site`. When
//! control changes that site's limits, the dispatcher sends a [`Wake`]. The
//! consumer then releases at once every record parked for the site before
//! the change:
//!
//! - those it holds in memory at the head of a paused tier partition;
//! - those it reads afterwards;
//! - those further down the paused tier partitions, which a read-ahead
//!   ([`read_ahead`]) takes out of order. The offset tracker marks each
//!   taken record ([`OffsetTracker::take_early`]), so the reading position
//!   skips it when it gets there, and the record's fate index entry skips
//!   it after a restart. The read-ahead keeps at most a site queue's worth
//!   of its records in flight, so the woken mail enters at the pace it
//!   leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use sluice_log::{Log, MessageLog, ReadLimit};
use sluice_proto::v1::Envelope;
use sluice_shaping::{Millis, Span};
use tokio::sync::mpsc;

use crate::dispatch::RecordRef;
use crate::fate;
use crate::fate_index::FateIndex;
use crate::offsets::OffsetTracker;

/// A site's limits changed at `at`: its mail parked before then may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    pub site: String,
    pub at: Millis,
}

/// The latest change of each site that had one.
#[derive(Debug, Default, Clone)]
pub struct Wakes(HashMap<String, Millis>);

impl Wakes {
    pub fn add(&mut self, wake: &Wake) {
        let at = self.0.entry(wake.site.clone()).or_insert(wake.at);
        *at = (*at).max(wake.at);
    }

    /// The latest change of any site.
    pub fn latest(&self) -> Option<Millis> {
        self.0.values().max().copied()
    }

    /// Whether `envelope` was parked for its site before the site's latest
    /// change.
    pub fn woken(&self, envelope: &Envelope) -> bool {
        let Some(parked) = fate::millis(&envelope.parked_at) else {
            return false;
        };
        self.0.get(&envelope.site).is_some_and(|at| parked <= *at)
    }
}

/// How many messages each site's ready queues hold, as the dispatcher last
/// counted them (every 200 ms). The consumer lets woken mail go into the
/// room this leaves, once per count.
#[derive(Debug, Default)]
pub struct SiteQueues(Mutex<(u64, HashMap<String, usize>)>);

impl SiteQueues {
    /// A new count of every site's queued messages.
    pub fn publish(&self, queued: HashMap<String, usize>) {
        let mut count = self.0.lock().expect("site queues lock");
        count.0 += 1;
        count.1 = queued;
    }

    /// The number of the latest count and `site`'s queued messages in it.
    pub fn queued(&self, site: &str) -> (u64, usize) {
        let count = self.0.lock().expect("site queues lock");
        (count.0, count.1.get(site).copied().unwrap_or(0))
    }
}

/// Clears what held a parked message back: it is due now.
pub fn release(envelope: &mut Envelope) {
    envelope.not_before = None;
    envelope.hold_until = None;
    envelope.parked_at = None;
}

/// A record taken early and its envelope.
pub type Early = Box<(RecordRef, Envelope)>;

/// What a read-ahead needs besides the partitions it reads.
pub struct ReadAhead {
    pub log: Log,
    pub tracker: Arc<Mutex<OffsetTracker>>,
    pub index: Option<Arc<FateIndex>>,
    pub wakes: Wakes,
    /// Records of its own in flight at most.
    pub cap: usize,
    /// The delay of each tier topic; other topics are not read ahead.
    pub tiers: Arc<HashMap<String, Span>>,
    pub out: mpsc::Sender<Early>,
}

/// How long a read-ahead follows one partition at most.
const READ_AT_MOST: Duration = Duration::from_secs(600);
/// How long a read waits for the first record (a Kafka fetch).
const READ_WAIT: Duration = Duration::from_secs(1);

/// Reads each of `partitions` from the consumer's reading position to where
/// records written after the read-ahead began start (or its end) and hands
/// over the woken records it may take early.
pub async fn read_ahead(ahead: ReadAhead, partitions: Vec<(String, i32)>) {
    let mut taken = 0usize;
    for (topic, partition) in partitions {
        let from = ahead
            .tracker
            .lock()
            .expect("offset tracker lock")
            .reading_position(&topic, partition);
        let Some(from) = from else { continue };
        match read_partition(&ahead, &topic, partition, from).await {
            Ok(n) => taken += n,
            Err(err) => {
                tracing::warn!(%topic, partition, %err, "reading ahead for woken mail failed; that mail comes back at its slot");
            }
        }
    }
    tracing::info!(taken, "read-ahead for woken mail finished");
}

/// One partition of [`read_ahead`]. A record held past now plus the tier's
/// delay was written after the read-ahead began: nothing from there on was
/// parked before the change, so the read stops.
async fn read_partition(
    ahead: &ReadAhead,
    topic: &str,
    partition: i32,
    mut from: i64,
) -> Result<usize, sluice_log::LogError> {
    let Some(delay) = ahead.tiers.get(topic) else {
        return Ok(0);
    };
    let horizon = fate::now().after(*delay);
    let deadline = tokio::time::Instant::now() + READ_AT_MOST;
    let mut taken = 0;
    while tokio::time::Instant::now() < deadline {
        let limit = ReadLimit::default();
        let records = ahead
            .log
            .read(topic, partition, from, limit, READ_WAIT)
            .await?;
        let Some(last) = records.last() else {
            return Ok(taken);
        };
        from = last.offset + 1;
        for record in records {
            let Ok(envelope) = Envelope::decode(record.payload.as_slice()) else {
                continue;
            };
            if fate::millis(&envelope.hold_until).is_some_and(|h| h > horizon) {
                return Ok(taken);
            }
            if !ahead.wakes.woken(&envelope) {
                continue;
            }
            let rec = RecordRef {
                topic: topic.to_owned(),
                partition,
                offset: record.offset,
                trace: crate::consume::record_trace(&record.headers),
            };
            if ahead.index.as_ref().is_some_and(|i| i.is_settled(&rec)) {
                continue;
            }
            wait_for_room(ahead).await;
            let took = ahead
                .tracker
                .lock()
                .expect("offset tracker lock")
                .take_early(topic, partition, record.offset);
            if !took {
                continue;
            }
            if ahead.out.send(Box::new((rec, envelope))).await.is_err() {
                return Ok(taken);
            }
            taken += 1;
        }
    }
    Ok(taken)
}

/// Waits while the read-ahead's records in flight reach its cap.
async fn wait_for_room(ahead: &ReadAhead) {
    loop {
        let live = ahead
            .tracker
            .lock()
            .expect("offset tracker lock")
            .early_in_flight();
        if live < ahead.cap {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(site: &str, at: u64) -> Envelope {
        Envelope {
            site: site.into(),
            parked_at: Some(fate::timestamp(Millis(at))),
            not_before: Some(fate::timestamp(Millis(at + 3_600_000))),
            ..Default::default()
        }
    }

    #[test]
    fn only_mail_parked_for_the_site_before_its_change_wakes() {
        let mut wakes = Wakes::default();
        wakes.add(&Wake {
            site: "slow".into(),
            at: Millis(10_000),
        });
        assert!(wakes.woken(&parked("slow", 9_000)));
        assert!(wakes.woken(&parked("slow", 10_000)));
        assert!(
            !wakes.woken(&parked("slow", 10_001)),
            "parked after the change"
        );
        assert!(!wakes.woken(&parked("fast", 9_000)), "another site");
        let mut retry = parked("slow", 9_000);
        retry.parked_at = None;
        assert!(
            !wakes.woken(&retry),
            "a retry or scheduled message never wakes"
        );
    }

    #[test]
    fn a_later_change_wakes_more_and_an_earlier_one_changes_nothing() {
        let mut wakes = Wakes::default();
        let wake = |at| Wake {
            site: "slow".into(),
            at: Millis(at),
        };
        wakes.add(&wake(10_000));
        wakes.add(&wake(20_000));
        wakes.add(&wake(15_000));
        assert!(wakes.woken(&parked("slow", 19_000)));
    }

    #[test]
    fn a_released_message_is_due_now() {
        let mut envelope = parked("slow", 9_000);
        envelope.hold_until = envelope.not_before;
        release(&mut envelope);
        assert_eq!(envelope.not_before, None);
        assert_eq!(envelope.hold_until, None);
        assert_eq!(envelope.parked_at, None);
        assert_eq!(envelope.site, "slow", "its site stays");
    }
}
