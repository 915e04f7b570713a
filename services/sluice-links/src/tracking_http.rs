//! The open pixel and click redirects on the HTTP listener
//! (docs/feedback.md#open-and-click-tracking). No credentials: the signed
//! token is the credential. A valid token publishes an `opened` or
//! `clicked` event with the User-Agent and the machine flag; a forged or
//! altered one gets `400` and changes nothing, and a click never leads
//! anywhere its token does not name.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Links;
use crate::tracking::{Kind, Tracked, Tracking};

/// A transparent 1x1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// How long a request waits for its event to be durable before it answers
/// anyway (the reader's click must not hang on the log).
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// `GET <path>/o/{token}` and `GET <path>/c/{token}` under the path of
/// `tracking.base_url`. A `HEAD` (what link scanners often send) gets the
/// same answer and records nothing.
pub fn routes(links: Arc<Links>, tracking: &Tracking) -> Router {
    let path = crate::unsubscribe::path_of(tracking.base_url());
    Router::new()
        .route(&format!("{path}/o/{{token}}"), get(open))
        .route(&format!("{path}/c/{{token}}"), get(click))
        .with_state(links)
}

async fn open(
    State(links): State<Arc<Links>>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(tracked) = verified(&links, Kind::Open, &token) else {
        return refused(&links, "open");
    };
    if method == Method::GET {
        record(&links, &tracked, &headers).await;
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store, no-cache, max-age=0"),
        ],
        PIXEL,
    )
        .into_response()
}

async fn click(
    State(links): State<Arc<Links>>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(tracked) = verified(&links, Kind::Click, &token) else {
        return refused(&links, "click");
    };
    // The target passed the rewrite's checks (no control characters), so
    // it is a valid header value; anything else is refused, not followed.
    let Ok(location) = HeaderValue::from_bytes(tracked.url.as_bytes()) else {
        return refused(&links, "click");
    };
    if method == Method::GET {
        record(&links, &tracked, &headers).await;
    }
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, no-cache, max-age=0"),
            ),
        ],
    )
        .into_response()
}

fn verified(links: &Links, kind: Kind, token: &str) -> Option<Tracked> {
    links.tracking.as_ref()?.verify(kind, token)
}

/// Publishes the event; a log that does not answer in time is logged and
/// counted, and the reader is answered all the same.
async fn record(links: &Links, tracked: &Tracked, headers: &HeaderMap) {
    let user_agent = headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let event = crate::engaged(tracked, &user_agent);
    let what = match tracked.kind {
        Kind::Open => "open",
        Kind::Click => "click",
    };
    match tokio::time::timeout(RECORD_WAIT, links.sink.publish(event)).await {
        Ok(Ok(())) => links.sink.count(what, "recorded"),
        Ok(Err(err)) => {
            links.sink.count(what, "failed");
            tracing::warn!(error = %err, message_id = %tracked.copy.message_id,
                "an open or click could not be recorded; the reader was answered anyway")
        }
        Err(_) => {
            links.sink.count(what, "unconfirmed");
            tracing::warn!(message_id = %tracked.copy.message_id,
                "the message log took over 5 s to take an open or click; check the log's health")
        }
    }
}

fn refused(links: &Links, what: &str) -> Response {
    links.sink.count(what, "refused");
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "This link is not valid: it was altered, cut short or not issued here. \
         Nothing was recorded.\n",
    )
        .into_response()
}
