//! OpenTelemetry traces: one message's path through ingest, the log, each
//! delivery attempt and the recorder, exported over OTLP when configured.
//!
//! Spans meant for export use the target [`TARGET`]; they are never shown
//! in the logs. When no OTLP endpoint is configured no exporting layer is
//! installed, every callsite of that target is disabled once, and a span
//! costs one cached interest check: tracing off costs nothing measurable
//! (docs/benchmarks.md).
//!
//! Context crosses processes as a W3C `traceparent`: in gRPC metadata and
//! in the log's record headers ([`propagate`]). Sampling is decided once,
//! where a trace starts (a ratio of traces, see [`Settings::sample`]), and
//! followed downstream; a span created with the field `sluice.force_trace =
//! true` (a tenant or a message asking to be traced) is always sampled.

mod propagate;
mod sampler;

pub use propagate::{
    FORCE_HEADER, HEADER, parent_from, traceparent, wants_trace, with_traceparent,
};

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// The target of every span that is exported (and never logged).
pub const TARGET: &str = "sluice_trace";

/// The span field that forces sampling of the trace it starts.
pub const FORCE_FIELD: &str = "sluice.force_trace";

/// How often finished spans are sent to the collector.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces. Instrumentation that would do work
/// beyond creating a span (formatting a `traceparent`, say) checks it.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What to export, and how much of it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    /// Share of new traces sampled, 0.0 ..= 1.0. Downstream spans follow
    /// the decision carried in `traceparent`.
    pub sample: f64,
    /// `service.name` of this process's spans, e.g. `sluice-ingest`.
    pub service: String,
}

impl Settings {
    /// Refuses a ratio outside 0..=1 or an endpoint that is not a URL.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sample) {
            return Err(format!(
                "trace sample ratio {} is outside 0.0 ..= 1.0 (0.01 samples 1 % of new traces)",
                self.sample
            ));
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(format!(
                "OTLP endpoint `{}` must be an http:// or https:// URL, e.g. http://127.0.0.1:4317",
                self.endpoint
            ));
        }
        Ok(())
    }
}

/// Owns the exporter; flushes what is left when dropped.
pub struct Exporting {
    provider: SdkTracerProvider,
}

impl Drop for Exporting {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(err) = self.provider.shutdown() {
            eprintln!("warning: flushing the last trace spans failed: {err}");
        }
    }
}

/// The layer that exports spans of [`TARGET`] over OTLP, and its guard.
/// Must be called inside a Tokio runtime (the gRPC channel lives there).
pub fn layer<S>(settings: &Settings) -> Result<(impl Layer<S> + use<S>, Exporting), String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    settings.check()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone())
        .build()
        .map_err(|err| format!("cannot set up the OTLP exporter: {err}"))?;
    Ok(exporting(exporter, settings.sample, &settings.service))
}

/// [`layer`] with any exporter (tests use an in-memory one).
fn exporting<S, E>(
    exporter: E,
    sample: f64,
    service: &str,
) -> (impl Layer<S> + use<S, E>, Exporting)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
{
    let batches = BatchConfigBuilder::default()
        .with_scheduled_delay(EXPORT_EVERY)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batches)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler::Sampling::new(sample))
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("sluice");
    let only_ours = Targets::new().with_target(TARGET, tracing::Level::TRACE);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(only_ours);
    ENABLED.store(true, Ordering::Relaxed);
    (layer, Exporting { provider })
}

/// The directive that keeps [`TARGET`]'s spans out of the logs: add it to
/// the log layer's filter.
pub fn log_directive() -> String {
    format!("{TARGET}=off")
}

#[cfg(test)]
mod tests;
