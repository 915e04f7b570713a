//! Counters of the recorder's work, readable while it runs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Totals since the recorder started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events counted for the first time (`sluice_recorder_events_counted_total`).
    pub counted: AtomicU64,
    /// Events skipped as duplicates (`sluice_recorder_events_duplicate_total`).
    pub duplicates: AtomicU64,
    /// `delivered` events of a message that already had one, at any attempt:
    /// the recipient got the message twice
    /// (`sluice_recorder_deliveries_duplicate_total`).
    pub duplicate_deliveries: AtomicU64,
    /// Records that were not a decodable `Event` (`sluice_recorder_records_malformed_total`).
    pub malformed: AtomicU64,
    /// Batches written and committed (`sluice_recorder_batches_committed_total`).
    pub batches: AtomicU64,
    /// Rounds of retries after failed writes (`sluice_recorder_write_retries_total`).
    pub write_retries: AtomicU64,
    /// Offset commits that failed after the writes succeeded; their events
    /// are read again and de-duplicated (`sluice_recorder_commit_failures_total`).
    pub commit_failures: AtomicU64,
}

impl Metrics {
    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
