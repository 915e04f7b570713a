//! The metrics endpoint every role serves: `GET /metrics` in the
//! OpenMetrics text format, behind the role's TLS and an optional bearer
//! token, with `/healthz` and `/readyz` beside it. Each role declares its
//! metrics once, in a prometheus-client registry with its own prefix
//! (`sluice_<role>_`), and a test per role checks docs/metrics.md lists
//! every one. `sluice dev` serves all roles' metrics on one endpoint
//! ([`combine`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
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
    fn combined_expositions_end_once() {
        let text = combine(vec![registry("a"), registry("b")])();
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(family_names(&text), ["a_things", "b_things"]);
        assert!(text.contains("a_things_total 1"), "{text}");
    }
}
