//! The metrics endpoint every role serves: `GET /metrics` in the
//! OpenMetrics text format, behind the role's TLS and an optional bearer
//! token, with `/healthz` and `/readyz` beside it. Each role declares its
//! metrics once, in a prometheus-client registry with its own prefix
//! (`sluice_<role>_`), and a test per role checks docs/metrics.md lists
//! every one. `sluice dev` serves all roles' metrics on one endpoint
//! ([`combine`]).

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// Where `GET /metrics` is served (docs/metrics.md lists every metric).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address to listen on, e.g. `127.0.0.1:9464`; unset: no endpoint.
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token scrapers must send
    /// (`authorization: Bearer <token>`; Prometheus: `authorization.credentials_file`).
    /// Unset: no token, and the endpoint must be on a loopback address.
    pub token_file: Option<PathBuf>,
}

impl MetricsSection {
    /// Binds `listen` when set.
    pub async fn bind(&self) -> std::io::Result<Option<TcpListener>> {
        match self.listen {
            Some(addr) => Ok(Some(
                crate::bind("metrics.listen", &addr.to_string()).await?,
            )),
            None => Ok(None),
        }
    }
}

/// Renders a registry (or several) as OpenMetrics text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The OpenMetrics text of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(%err, "encoding metrics failed");
    }
    out
}

/// One exposition of several roles' metrics (their names never collide:
/// each role has its own prefix), ended by a single `# EOF`.
pub fn combine(parts: Vec<Render>) -> Render {
    Arc::new(move || {
        let mut out = String::new();
        for part in &parts {
            for line in part().lines().filter(|l| *l != "# EOF") {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("# EOF\n");
        out
    })
}

/// Scrapes served at once; more are answered `503`.
const MAX_REQUESTS: usize = 16;

/// The metrics listener behind the role's TLS (refused off loopback
/// without TLS or without a token) and its token. Errors name the setting.
pub fn door(
    listener: TcpListener,
    section: &MetricsSection,
    tls: &crate::tls::TlsConfig,
) -> Result<(crate::listen::Incoming, Option<String>), (&'static str, String)> {
    let token = match &section.token_file {
        Some(file) => Some(
            crate::secret::read_token_file(file)
                .map_err(|err| ("metrics.token_file", format!("{}: {err}", file.display())))?,
        ),
        None => None,
    };
    let gate = crate::gate::Gate::new(64, 16);
    let incoming = crate::listen::open_for(
        listener,
        "metrics.listen",
        tls,
        gate,
        crate::listen::HTTP1,
        token.is_none(),
    )
    .map_err(|err| ("tls", err.0))?;
    Ok((incoming, token))
}

/// Serves `GET /metrics` on `incoming` until `shutdown` is cancelled; with
/// a `token`, only to requests carrying `authorization: Bearer <token>`
/// (401 otherwise). `/healthz` and `/readyz` (ready while `ready` passes,
/// until shutdown starts) need no token.
pub async fn serve(
    incoming: crate::listen::Incoming,
    metrics: Render,
    token: Option<String>,
    ready: crate::probes::Check,
    shutdown: crate::CancellationToken,
) -> std::io::Result<()> {
    let token = Arc::new(token);
    let app = Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let (metrics, token) = (metrics.clone(), token.clone());
            async move {
                if !authorized(token.as_deref(), &headers) {
                    return (StatusCode::UNAUTHORIZED, "a bearer token is required\n")
                        .into_response();
                }
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics(),
                )
                    .into_response()
            }
        }),
    );
    let probes = crate::probes::routes(shutdown.clone(), ready);
    let shed = crate::shed::Shed::new(MAX_REQUESTS, crate::shed::Protocol::Http);
    crate::listen::serve_http(incoming, app.merge(probes), shed, shutdown).await
}

/// The endpoint of a role that may have a metrics listener: opened now
/// (so a bad setting fails the start), served by the returned future until
/// `shutdown`; without a listener the future ends at once.
pub fn serve_optional(
    listener: Option<TcpListener>,
    section: &MetricsSection,
    tls: &crate::tls::TlsConfig,
    metrics: Render,
    ready: crate::probes::Check,
    shutdown: &crate::CancellationToken,
) -> Result<impl std::future::Future<Output = std::io::Result<()>> + use<>, (&'static str, String)>
{
    let door = match listener {
        Some(listener) => Some(door(listener, section, tls)?),
        None => None,
    };
    let shutdown = shutdown.clone();
    Ok(async move {
        match door {
            Some((incoming, token)) => serve(incoming, metrics, token, ready, shutdown).await,
            None => Ok(()),
        }
    })
}

/// Whether the request may read the metrics: no token configured, or its
/// bearer token is the configured one.
fn authorized(token: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    crate::secret::same_token(given, token)
}

/// Distinct tenant names a role labels metrics with; later ones are
/// counted as [`OTHER`] ([`BoundedLabels`]).
pub const MAX_TENANT_LABELS: usize = 1_000;

/// The label value open sets fold into once full.
pub const OTHER: &str = "other";

/// Label values from an open set (tenant names) kept bounded: the first
/// `limit` distinct values are used as they are, every later one becomes
/// [`OTHER`], so a metric's series stay bounded whatever callers send.
#[derive(Debug)]
pub struct BoundedLabels {
    seen: Mutex<HashSet<String>>,
    limit: usize,
}

impl BoundedLabels {
    /// A set that takes `limit` distinct values.
    pub fn new(limit: usize) -> Self {
        Self {
            seen: Mutex::default(),
            limit,
        }
    }

    /// `value` if it is among the first `limit` distinct values, else
    /// [`OTHER`].
    pub fn label(&self, value: &str) -> String {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() >= self.limit {
            return OTHER.to_owned();
        }
        seen.insert(value.to_owned());
        value.to_owned()
    }
}

impl Default for BoundedLabels {
    /// [`MAX_TENANT_LABELS`] values.
    fn default() -> Self {
        Self::new(MAX_TENANT_LABELS)
    }
}

/// Labels of a message-log partition: bounded by the topics a role reads
/// and their partition counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

/// How often [`PartitionGauges::refresh`] measures by default.
pub const PARTITION_REFRESH: Duration = Duration::from_secs(5);

/// A gauge per message-log partition, set from whole snapshots (e.g. a
/// consumer's lag): each snapshot replaces the previous one, so partitions
/// it no longer names (revoked) leave the exposition. Cheap to clone;
/// clones share the gauges.
#[derive(Clone, Debug)]
pub struct PartitionGauges {
    family: Family<PartitionLabels, Gauge>,
    shown: Arc<Mutex<BTreeSet<PartitionLabels>>>,
    /// When the last measurement started; `None` before the first.
    started: Arc<Mutex<Option<Instant>>>,
    measuring: Arc<AtomicBool>,
    every: Duration,
}

impl Default for PartitionGauges {
    /// Measured every [`PARTITION_REFRESH`].
    fn default() -> Self {
        Self::every(PARTITION_REFRESH)
    }
}

impl PartitionGauges {
    /// Gauges [`PartitionGauges::refresh`] measures at most once per `every`.
    pub fn every(every: Duration) -> Self {
        Self {
            family: Family::default(),
            shown: Arc::default(),
            started: Arc::default(),
            measuring: Arc::default(),
            every,
        }
    }

    /// The family to register.
    pub fn family(&self) -> Family<PartitionLabels, Gauge> {
        self.family.clone()
    }

    /// Sets the gauges to `snapshot` (topic, partition, value) and removes
    /// those of partitions it does not name.
    pub fn replace<T: Into<(String, i32, i64)>>(&self, snapshot: impl IntoIterator<Item = T>) {
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        let mut now = BTreeSet::new();
        for (topic, partition, value) in snapshot.into_iter().map(Into::into) {
            let labels = PartitionLabels { topic, partition };
            self.family.get_or_create(&labels).set(value);
            now.insert(labels);
        }
        for gone in shown.difference(&now) {
            self.family.remove(gone);
        }
        *shown = now;
    }

    /// When a measurement is due (the first call, then once per `every`)
    /// and the previous one has finished: starts `measure()` in its own
    /// task and [`PartitionGauges::replace`]s the gauges with its snapshot
    /// (a failed one keeps them as they were). Otherwise does nothing, so
    /// callers may call it from a busy loop.
    pub fn refresh<F, T, E>(&self, measure: impl FnOnce() -> F)
    where
        F: Future<Output = Result<Vec<T>, E>> + Send + 'static,
        T: Into<(String, i32, i64)>,
        E: std::fmt::Display,
    {
        if !self.due() {
            return;
        }
        let measuring = measure();
        let gauges = self.clone();
        tokio::spawn(async move {
            match measuring.await {
                Ok(snapshot) => gauges.replace(snapshot),
                Err(err) => {
                    tracing::debug!(%err, "measuring partition gauges failed; the last values stay")
                }
            }
            gauges.measuring.store(false, Ordering::Release);
        });
    }

    /// Whether a measurement may start now; if so, marks it started.
    fn due(&self) -> bool {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        if started.is_some_and(|at| at.elapsed() < self.every)
            || self.measuring.swap(true, Ordering::AcqRel)
        {
            return false;
        }
        *started = Some(Instant::now());
        true
    }
}

/// The names of the metric families in an exposition (`# HELP` lines),
/// for the tests that check docs/metrics.md lists every one.
pub fn family_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Panics naming every family of `text` that `docs` does not list as
/// `` `name` ``, and every family without a help text.
pub fn assert_documented(text: &str, docs: &str) {
    let missing: Vec<String> = family_names(text)
        .into_iter()
        .filter(|name| !docs.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/metrics.md does not list {missing:?}"
    );
    for line in text.lines().filter(|l| l.starts_with("# HELP ")) {
        assert!(
            line.split_whitespace().count() > 3,
            "a metric without help text: {line}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    fn registry(prefix: &str) -> Render {
        let mut registry = Registry::with_prefix(prefix);
        let counter = Counter::<u64>::default();
        counter.inc();
        registry.register("things", "Things seen", counter);
        let registry = Arc::new(registry);
        Arc::new(move || render(&registry))
    }

    #[test]
    fn bounded_labels_fold_new_values_once_full() {
        let tenants = BoundedLabels::new(2);
        assert_eq!(tenants.label("a"), "a");
        assert_eq!(tenants.label("b"), "b");
        assert_eq!(tenants.label("c"), OTHER);
        assert_eq!(tenants.label("a"), "a", "known values stay");
        assert_eq!(BoundedLabels::default().limit, MAX_TENANT_LABELS);
    }

    #[test]
    fn partition_gauges_show_the_latest_snapshot_only() {
        let gauges = PartitionGauges::default();
        let mut registry = Registry::with_prefix("t");
        registry.register("lag", "Lag", gauges.family());
        gauges.replace([("out".to_owned(), 0, 5), ("out".to_owned(), 1, 7)]);
        gauges.replace([("out".to_owned(), 1, 2)]);
        let text = render(&registry);
        assert!(
            text.contains("t_lag{topic=\"out\",partition=\"1\"} 2"),
            "{text}"
        );
        assert!(!text.contains("partition=\"0\""), "revoked stays: {text}");
    }

    /// The partitions [`PartitionGauges`] shows now, once no measurement runs.
    async fn shown(gauges: &PartitionGauges) -> Vec<i32> {
        while gauges.measuring.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        let shown = gauges.shown.lock().expect("shown");
        shown.iter().map(|l| l.partition).collect()
    }

    #[tokio::test]
    async fn a_refresh_runs_one_measurement_at_a_time_and_when_due() {
        let gauges = PartitionGauges::every(Duration::ZERO);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        gauges.refresh(|| async move {
            rx.await.ok();
            Ok::<_, String>(vec![("out".to_owned(), 0, 1)])
        });
        gauges.refresh(|| async { Ok::<_, String>(vec![("out".to_owned(), 9, 9)]) });
        tx.send(()).expect("the first measurement waits");
        assert_eq!(shown(&gauges).await, [0], "the second one was skipped");
        gauges.refresh(|| async { Err::<Vec<(String, i32, i64)>, _>("broker down") });
        assert_eq!(shown(&gauges).await, [0], "a failure keeps the values");

        let slow = PartitionGauges::every(Duration::from_secs(3600));
        slow.refresh(|| async { Ok::<_, String>(vec![("out".to_owned(), 1, 1)]) });
        assert_eq!(shown(&slow).await, [1]);
        slow.refresh(|| async { Ok::<_, String>(vec![("out".to_owned(), 2, 1)]) });
        assert_eq!(shown(&slow).await, [1], "not due again within the hour");
    }

    #[test]
    fn combined_expositions_end_once() {
        let text = combine(vec![registry("a"), registry("b")])();
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(family_names(&text), ["a_things", "b_things"]);
        assert!(text.contains("a_things_total 1"), "{text}");
    }
}
