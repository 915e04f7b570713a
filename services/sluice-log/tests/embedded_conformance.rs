//! The shared `MessageLog` conformance suite (`sluice_log::conformance`)
//! against the embedded log; `tests/kafka_conformance.rs` runs the same suite against Kafka.

use std::sync::atomic::{AtomicU32, Ordering};

use sluice_log::EmbeddedLog;
use sluice_log::conformance;

/// A fresh log in a temporary directory, and a name source for it.
async fn open() -> (tempfile::TempDir, EmbeddedLog) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = EmbeddedLog::open(dir.path()).expect("open log");
    (dir, log)
}

fn fresh(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{label}.{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

sluice_log::conformance_tests!(open, fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_on_one_log() {
    let (_dir, log) = open().await;
    conformance::run_all(&log, &fresh).await;
}
