//! The shared `MessageLog` conformance suite (`sluice_store::conformance`)
//! against the embedded log; `sluice-log` runs the same suite against Kafka.

use std::sync::atomic::{AtomicU32, Ordering};

use sluice_store::EmbeddedLog;
use sluice_store::conformance;

/// A fresh log in a temporary directory, and a name source for it.
fn open() -> (tempfile::TempDir, EmbeddedLog) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = EmbeddedLog::open(dir.path()).expect("open log");
    (dir, log)
}

fn fresh(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{label}.{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

macro_rules! conformance_tests {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (_dir, log) = open();
            conformance::$check(&log, &fresh).await;
        }
    )*};
}

conformance_tests!(
    offsets_are_dense_and_follow_the_key,
    read_limits_hold,
    read_waits_for_an_append,
    reads_below_the_start_begin_at_the_earliest,
    commits_round_trip_and_resume,
    batches_span_topics,
    bad_input_is_refused,
    a_member_reads_every_record_once,
    a_member_resumes_after_the_commit,
    paused_partitions_wait,
    large_records_round_trip,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_on_one_log() {
    let (_dir, log) = open();
    conformance::run_all(&log, &fresh).await;
}
