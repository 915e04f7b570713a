//! HTTP probes for the roles that serve HTTP (ingest's API, the sender's
//! metrics endpoint): `GET /healthz` answers `200 ok` while the process
//! serves; `GET /readyz` answers `200 ready` while the role can do its work
//! and `503` with the reason otherwise — once shutdown starts (the role is
//! draining: a load balancer stops sending) or when a back end it needs
//! does not answer. No credentials (probes carry none); the answers name
//! no data. A readiness check runs at most once a second, whoever asks.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

use crate::CancellationToken;

/// A role's readiness check: `Err` says why it cannot serve now.
pub type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The last readiness answer and when it was found.
type Last = Mutex<Option<(Instant, Result<(), String>)>>;

/// How long a readiness answer is reused.
const REUSE: Duration = Duration::from_secs(1);

/// `/healthz` and `/readyz`; ready while `stop` is not cancelled and
/// `check` passes.
pub fn routes(stop: CancellationToken, check: Check) -> Router {
    let last: Arc<Last> = Arc::default();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let (stop, check, last) = (stop.clone(), check.clone(), last.clone());
                async move { readiness(&stop, &check, &last).await }
            }),
        )
}

async fn readiness(stop: &CancellationToken, check: &Check, last: &Last) -> (StatusCode, String) {
    if stop.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutdown started\n".into(),
        );
    }
    let cached = last
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .filter(|(at, _)| at.elapsed() < REUSE)
        .map(|(_, result)| result.clone());
    let result = match cached {
        Some(result) => result,
        None => {
            let result = check().await;
            *last.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((Instant::now(), result.clone()));
            result
        }
    };
    match result {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

/// A check that always passes (for roles with nothing to ask).
pub fn always_ready() -> Check {
    Arc::new(|| Box::pin(async { Ok(()) }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = app.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn ready_until_a_check_fails_or_shutdown_starts_and_checks_are_reused() {
        let calls = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, f) = (calls.clone(), failing.clone());
        let check: Check = Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            let fail = f.load(Ordering::SeqCst);
            Box::pin(async move {
                if fail {
                    Err("the log is down".into())
                } else {
                    Ok(())
                }
            })
        });
        let stop = CancellationToken::new();
        let app = routes(stop.clone(), check);
        assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok\n".into()));
        assert_eq!(
            get(&app, "/readyz").await,
            (StatusCode::OK, "ready\n".into())
        );
        failing.store(true, Ordering::SeqCst);
        assert_eq!(
            get(&app, "/readyz").await.0,
            StatusCode::OK,
            "reused within 1 s"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(REUSE).await;
        let (status, body) = get(&app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: the log is down\n");
        stop.cancel();
        let (status, body) = get(&app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("draining"), "{body}");
        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK, "still alive");
    }
}
