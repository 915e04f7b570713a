//! Carrying a span's context across processes as a W3C `traceparent`
//! (<https://www.w3.org/TR/trace-context/>): in gRPC metadata and in the
//! log's record headers.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::enabled;

/// The header (and gRPC metadata key) that carries the context.
pub const HEADER: &str = "traceparent";

/// The request header (and gRPC metadata key) by which a caller asks for
/// its submission to be traced whatever the sampling ratio: `1` or `true`.
pub const FORCE_HEADER: &str = "sluice-trace";

/// Whether a [`FORCE_HEADER`] value asks for tracing.
pub fn wants_trace(value: Option<&[u8]>) -> bool {
    matches!(value, Some(b"1" | b"true" | b"yes"))
}

/// `span`'s context as a `traceparent` value, or `None` when traces are not
/// exported or the span is not traced. An unsampled span's value is still
/// returned: downstream spans follow its decision.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(HEADER)
}

/// The remote context a `traceparent` value names, if it is well-formed.
pub fn parent_from(value: &[u8]) -> Option<opentelemetry::Context> {
    let value = std::str::from_utf8(value).ok()?;
    let carrier = HashMap::from([(HEADER.to_owned(), value.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of the remote span `value` names. Call it before the
/// span is first entered; a missing or malformed value leaves the span a
/// root of its own.
pub fn with_traceparent(span: &tracing::Span, value: Option<&[u8]>) {
    if !enabled() {
        return;
    }
    if let Some(cx) = value.and_then(parent_from)
        && let Err(err) = span.set_parent(cx)
    {
        tracing::debug!(error = %err, "a span could not take its remote parent");
    }
}
