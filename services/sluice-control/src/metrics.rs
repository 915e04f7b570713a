//! Control's metrics, declared once in a registry prefixed
//! `sluice_control_` and served at `GET /metrics` on `metrics.listen`.
//! docs/metrics.md lists every one; a test below keeps that list complete.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// All metrics of one control process.
#[derive(Debug)]
pub struct ControlMetrics {
    registry: Registry,
    /// The configuration's latest revision.
    pub revision: Gauge,
    /// Changes written (puts, deletes, suppressions).
    pub writes: Counter,
    /// Watch streams open now.
    pub watchers: Gauge,
    /// Requests answered UNAVAILABLE because `max_requests` were in progress.
    pub shed: Counter,
}

impl Default for ControlMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControlMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice_control");
        let revision = Gauge::default();
        registry.register(
            "revision",
            "Latest revision of the configuration this process has written or read",
            revision.clone(),
        );
        let writes = Counter::default();
        registry.register(
            "writes",
            "Configuration changes written through this process (puts, deletes, suppressions)",
            writes.clone(),
        );
        let watchers = Gauge::default();
        registry.register(
            "watchers",
            "Watch streams open now (at most max_watchers)",
            watchers.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "requests_shed",
            "Requests answered UNAVAILABLE because max_requests were in progress",
            shed.clone(),
        );
        Self {
            registry,
            revision,
            writes,
            watchers,
            shed,
        }
    }

    /// Records a change written at `revision`.
    pub fn wrote(&self, revision: u64) {
        self.writes.inc();
        self.revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        sluice_node::metrics::render(&self.registry)
    }
}

/// Counts an open Watch stream for as long as it lives.
pub(crate) struct Watching(Gauge);

impl Watching {
    pub(crate) fn new(watchers: &Gauge) -> Self {
        watchers.inc();
        Self(watchers.clone())
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_is_listed_in_the_docs() {
        let m = ControlMetrics::new();
        m.wrote(7);
        let watching = Watching::new(&m.watchers);
        let text = m.render();
        assert!(text.contains("sluice_control_revision 7"), "{text}");
        assert!(text.contains("sluice_control_watchers 1"), "{text}");
        drop(watching);
        assert!(m.render().contains("sluice_control_watchers 0"));
        sluice_node::metrics::assert_documented(&text, include_str!("../../../docs/metrics.md"));
    }
}
