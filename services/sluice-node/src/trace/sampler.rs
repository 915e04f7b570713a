//! The sampling rule: a ratio of new traces, the parent's decision for the
//! rest, and always for spans that ask to be traced.

use opentelemetry::trace::{Link, SpanKind, TraceId};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

use super::FORCE_FIELD;

#[derive(Debug, Clone)]
pub(super) struct Sampling {
    usual: Sampler,
}

impl Sampling {
    pub(super) fn new(ratio: f64) -> Self {
        let new_traces = Sampler::TraceIdRatioBased(ratio);
        Self {
            usual: Sampler::ParentBased(Box::new(new_traces)),
        }
    }
}

fn forced(attributes: &[KeyValue]) -> bool {
    attributes
        .iter()
        .any(|kv| kv.key.as_str() == FORCE_FIELD && kv.value == Value::Bool(true))
}

impl ShouldSample for Sampling {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let usual = self
            .usual
            .should_sample(parent, trace_id, name, kind, attributes, links);
        if forced(attributes) {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                ..usual
            };
        }
        usual
    }
}
