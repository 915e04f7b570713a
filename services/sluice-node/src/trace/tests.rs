use std::sync::Mutex;

use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tracing_subscriber::layer::SubscriberExt;

use super::*;

/// `ENABLED` is process-wide: one test at a time installs an exporter.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `f` under a subscriber that exports to memory at `sample`; returns
/// the finished spans.
fn traced<T>(sample: f64, f: impl FnOnce() -> T) -> (T, Vec<SpanData>) {
    let memory = InMemorySpanExporter::default();
    let (layer, exporting) = exporting(memory.clone(), sample, "sluice-test");
    let subscriber = tracing_subscriber::registry().with(layer);
    let out = tracing::subscriber::with_default(subscriber, f);
    exporting.provider.force_flush().unwrap();
    let spans = memory.get_finished_spans().unwrap();
    drop(exporting);
    (out, spans)
}

#[test]
fn a_child_in_another_process_joins_the_trace() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (header, first) = traced(1.0, || {
        let span = tracing::info_span!(target: TARGET, "ingest.accept");
        let _in = span.enter();
        traceparent(&span).expect("a sampled span has a traceparent")
    });
    let ((), second) = traced(1.0, || {
        let span = tracing::info_span!(target: TARGET, "sender.attempt");
        with_traceparent(&span, Some(header.as_bytes()));
        let _in = span.enter();
        let _child = tracing::info_span!(target: TARGET, "smtp.connect").entered();
    });
    let accept = &first[0];
    let attempt = second.iter().find(|s| s.name == "sender.attempt").unwrap();
    let connect = second.iter().find(|s| s.name == "smtp.connect").unwrap();
    assert_eq!(
        attempt.span_context.trace_id(),
        accept.span_context.trace_id()
    );
    assert_eq!(attempt.parent_span_id, accept.span_context.span_id());
    assert_eq!(connect.parent_span_id, attempt.span_context.span_id());
    assert!(header.ends_with("-01"), "sampled flag set: {header}");
}

#[test]
fn sampling_follows_the_ratio_the_parent_and_the_force_flag() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (header, spans) = traced(0.0, || {
        let plain = tracing::info_span!(target: TARGET, "plain");
        drop(plain.enter());
        let forced = tracing::info_span!(target: TARGET, "forced", sluice.force_trace = true);
        drop(forced.enter());
        traceparent(&plain).expect("an unsampled span still propagates")
    });
    let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["forced"]);
    assert!(header.ends_with("-00"), "unsampled flag: {header}");
    // Downstream follows the unsampled decision even when it samples all.
    let ((), spans) = traced(1.0, || {
        let span = tracing::info_span!(target: TARGET, "downstream");
        with_traceparent(&span, Some(header.as_bytes()));
        drop(span.enter());
    });
    assert!(spans.is_empty(), "{spans:?}");
}

#[test]
fn bad_or_missing_context_starts_a_root_and_nothing_runs_when_off() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    assert!(parent_from(b"00-zz-01").is_none());
    assert!(parent_from(b"00-00000000000000000000000000000000-0000000000000000-01").is_none());
    let ((), spans) = traced(1.0, || {
        let span = tracing::info_span!(target: TARGET, "root");
        with_traceparent(&span, Some(b"garbage"));
        drop(span.enter());
    });
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans[0].parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
    // No exporter installed: no context is produced or read.
    assert!(!enabled());
    let span = tracing::info_span!(target: TARGET, "off");
    assert!(traceparent(&span).is_none());
}

#[test]
fn settings_are_checked() {
    let ok = Settings {
        endpoint: "http://127.0.0.1:4317".into(),
        sample: 0.01,
        service: "sluice-ingest".into(),
    };
    assert!(ok.check().is_ok());
    let ratio = Settings {
        sample: 1.5,
        ..ok.clone()
    };
    assert!(ratio.check().unwrap_err().contains("0.0 ..= 1.0"));
    let url = Settings {
        endpoint: "127.0.0.1:4317".into(),
        ..ok
    };
    assert!(url.check().unwrap_err().contains("http://"));
}
