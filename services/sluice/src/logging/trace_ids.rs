//! Trace and span ids on JSON log lines written inside a traced span.

use opentelemetry::trace::TraceContextExt;
use tracing::Subscriber;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Wraps the JSON event format: a line written inside a sampled span gets
/// `"trace_id"` and `"span_id"` (hex, as the collector shows them) before
/// its closing brace.
pub struct WithTraceIds<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = current_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.trim_end().strip_suffix('}') {
            Some(open) => writeln!(
                writer,
                "{open},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
            ),
            None => writer.write_str(&line),
        }
    }
}

/// The ids of the current span, when it is exported (sampled).
fn current_ids() -> Option<(String, String)> {
    if !sluice_node::trace::enabled() {
        return None;
    }
    // Entering an exported span makes its context OpenTelemetry's current
    // one (`Span::current()` is not available inside a formatter).
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled())
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::*;

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn parsed(lines: &Lines) -> Vec<serde_json::Value> {
        let bytes = lines.0.lock().expect("lines").clone();
        String::from_utf8(bytes)
            .expect("utf-8 lines")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[tokio::test]
    async fn json_lines_inside_a_sampled_span_carry_its_ids() {
        // Nothing listens on the endpoint: spans are dropped after export
        // fails, which is not what this test looks at.
        let settings = sluice_node::trace::Settings {
            endpoint: "http://127.0.0.1:9".into(),
            sample: 1.0,
            service: "sluice-test".into(),
        };
        let (spans, _exporting) = sluice_node::trace::layer(&settings).expect("layer");
        let lines = Lines::default();
        let writer = lines.clone();
        let format = tracing_subscriber::fmt::format().json();
        let logs = tracing_subscriber::fmt::layer()
            .json()
            .event_format(WithTraceIds(format))
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(logs).with(spans);
        let expected = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any span");
            let span = tracing::info_span!(target: sluice_node::trace::TARGET, "sender.attempt");
            let _in = span.enter();
            tracing::warn!(message_id = "m-1", "inside the attempt");
            let cx = span.context();
            let sc = cx.span().span_context().clone();
            (sc.trace_id().to_string(), sc.span_id().to_string())
        });
        let lines = parsed(&lines);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[1]["trace_id"], expected.0.as_str());
        assert_eq!(lines[1]["span_id"], expected.1.as_str());
        assert_eq!(lines[1]["fields"]["message_id"], "m-1");
    }
}
