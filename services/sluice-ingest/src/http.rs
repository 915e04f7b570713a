//! HTTP JSON front door, same semantics as gRPC, described by the OpenAPI
//! document served at `/openapi.json`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sluice_proto::v1::SendResponse;

use crate::IngestError;
use crate::model::{Content, RecipientInput, Submission, TraceRequest};
use crate::pipeline::Ingestor;
use crate::tenant::Tenant;

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route: (method, path). A test checks each is in [`OPENAPI`].
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/messages"),
    ("post", "/v1/messages/batch"),
    ("get", "/v1/suppressions"),
    ("post", "/v1/suppressions"),
    ("post", "/v1/suppressions/remove"),
    ("delete", "/v1/suppressions/{address}"),
    ("get", "/v1/webhooks"),
    ("put", "/v1/webhooks/{id}"),
    ("delete", "/v1/webhooks/{id}"),
    ("get", "/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

const BATCH_CONCURRENCY: usize = 16;

/// Serves the API and the probes (`/healthz`, `/readyz`: ready while the
/// message log answers and shutdown has not started) on `incoming` until
/// `shutdown` is cancelled.
pub async fn serve(
    incoming: sluice_node::listen::Incoming,
    ingestor: Arc<Ingestor>,
    shutdown: sluice_node::CancellationToken,
) -> Result<(), IngestError> {
    let check = readiness(&ingestor);
    let shed = sluice_node::shed::Shed::new(
        ingestor.limits().max_requests,
        sluice_node::shed::Protocol::Http,
    )
    .counting(ingestor.metrics().shed_counter(crate::metrics::Door::Http));
    let app = router(ingestor.clone())
        .merge(links(&ingestor).routes())
        .merge(sluice_node::probes::routes(shutdown.clone(), check));
    sluice_node::listen::serve_http(incoming, app, shed, shutdown)
        .await
        .map_err(IngestError::Io)
}

/// Ready while the message log answers ([`Ingestor::ready`]).
pub(crate) fn readiness(ingestor: &Arc<Ingestor>) -> sluice_node::probes::Check {
    let ingestor = ingestor.clone();
    Arc::new(move || {
        let ingestor = ingestor.clone();
        Box::pin(async move { ingestor.ready().await })
    })
}

/// The one-click unsubscribe and tracking endpoints, answered here as on
/// the inbound role (docs/feedback.md).
fn links(ingestor: &Arc<Ingestor>) -> Arc<sluice_links::Links> {
    Arc::new(sluice_links::Links {
        unsubscribe: ingestor.unsubscribe().clone(),
        tracking: ingestor.tracking().cloned(),
        body_timeout: ingestor.limits().body_timeout.into(),
        sink: Arc::new(LinkEvents(ingestor.clone())),
    })
}

/// Publishes the link endpoints' events through the node's publisher.
struct LinkEvents(Arc<Ingestor>);

impl sluice_links::Sink for LinkEvents {
    fn publish(
        &self,
        event: sluice_proto::v1::Event,
    ) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.publish_event(event).await.map_err(|e| e.to_string()) })
    }

    fn count(&self, what: &str, outcome: &str) {
        self.0.metrics().link(what, outcome);
    }
}

/// The API's routes.
pub fn router(ingestor: Arc<Ingestor>) -> Router {
    Router::new()
        .route("/v1/messages", post(send))
        .route("/v1/messages/batch", post(send_batch))
        .route("/openapi.json", get(openapi))
        .merge(crate::suppression_http::routes())
        .merge(crate::webhook_api::routes())
        .with_state(ingestor)
}

/// Reads a request body of at most the body limit (base64 raw messages are
/// 4/3 of their size, plus JSON overhead) within `limits.body_timeout`: a
/// client that trickles its body does not hold its place for long.
pub(crate) async fn read_body(ingestor: &Ingestor, body: Body) -> Result<Bytes, IngestError> {
    let limits = ingestor.limits();
    let limit = limits.max_message_bytes * 2 + 1024 * 1024;
    let timeout: std::time::Duration = limits.body_timeout.into();
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit));
    match read.await {
        Err(_) => Err(IngestError::Timeout {
            stage: "request body",
            limit: timeout,
        }),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(err)) => Err(body_error(&err, limit)),
    }
}

/// A body that could not be read: too large, or the connection failed.
fn body_error(err: &axum::Error, limit: usize) -> IngestError {
    let too_large =
        std::error::Error::source(err).is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
    if too_large {
        IngestError::TooLarge {
            field: "body".into(),
            limit,
            actual: limit + 1,
        }
    } else {
        IngestError::invalid("body", format!("could not be read: {err}"))
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The tenant whose API key the request carries. An extractor from the
/// request's head, so a request without a valid key is refused before its
/// body is read (axum reads the body last, only for the `Bytes` argument).
pub(crate) struct Authed(pub(crate) Arc<Tenant>);

impl axum::extract::FromRequestParts<Arc<Ingestor>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        ingestor: &Arc<Ingestor>,
    ) -> Result<Self, Response> {
        authenticate(ingestor, &parts.headers)
            .map(Authed)
            .map_err(|err| error_response(&err, None))
    }
}

async fn send(
    State(ingestor): State<Arc<Ingestor>>,
    Authed(tenant): Authed,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let body = read_body(&ingestor, body).await?;
        let mut request: JsonSendRequest = parse(&body)?;
        if request.idempotency_key.is_empty()
            && let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok())
        {
            request.idempotency_key = key.to_owned();
        }
        let door = crate::metrics::Door::Http;
        let mut submission = request.into_submission()?;
        submission.trace = TraceRequest::from_headers(&headers);
        ingestor.submit_via(door, &tenant, submission).await
    }
    .await;
    match result {
        Ok(response) => {
            (StatusCode::OK, axum::Json(JsonSendResponse::from(response))).into_response()
        }
        Err(err) => error_response(&err, None),
    }
}

async fn send_batch(
    State(ingestor): State<Arc<Ingestor>>,
    Authed(tenant): Authed,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let trace = TraceRequest::from_headers(&headers);
    let batch = match read_body(&ingestor, body)
        .await
        .and_then(|body| parse::<JsonBatch>(&body))
    {
        Ok(batch) => batch,
        Err(err) => return error_response(&err, None),
    };
    let results: Vec<_> = futures::stream::iter(batch.messages)
        .map(|message| submit_json(&ingestor, &tenant, message, &trace))
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    let mut responses = Vec::new();
    let mut durable = Vec::new();
    let mut failure = None;
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(response) => {
                durable.extend(response.recipients.iter().map(|r| r.message_id.clone()));
                responses.push(JsonSendResponse::from(response));
            }
            Err(err) => {
                durable.extend(err.durable_ids().iter().cloned());
                failure.get_or_insert((index, err));
            }
        }
    }
    match failure {
        None => (StatusCode::OK, axum::Json(JsonBatchResponse { responses })).into_response(),
        Some((index, err)) => error_response(&err, Some((index, durable))),
    }
}

async fn submit_json(
    ingestor: &Ingestor,
    tenant: &Tenant,
    message: JsonSendRequest,
    trace: &TraceRequest,
) -> Result<SendResponse, IngestError> {
    let mut submission = message.into_submission()?;
    submission.trace = trace.clone();
    ingestor
        .submit_via(crate::metrics::Door::Http, tenant, submission)
        .await
}

fn authenticate(ingestor: &Ingestor, headers: &HeaderMap) -> Result<Arc<Tenant>, IngestError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    ingestor.directory().tenants().by_bearer(value)
}

/// A `POST /v1/messages` body as the submission it asks for.
pub(crate) fn decode_json(body: &[u8]) -> Result<Submission, IngestError> {
    parse::<JsonSendRequest>(body)?.into_submission()
}

pub(crate) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, IngestError> {
    serde_json::from_slice(body).map_err(|err| IngestError::invalid("body", err.to_string()))
}

pub(crate) fn error_response(err: &IngestError, batch: Option<(usize, Vec<String>)>) -> Response {
    let status =
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (index, durable) = match batch {
        Some((index, durable)) => (Some(index), durable),
        None => (None, err.durable_ids().to_vec()),
    };
    let body = JsonError {
        error: JsonErrorBody {
            code: format!("{:?}", err.grpc_code()),
            message: err.to_string(),
            request_index: index,
            durable_message_ids: durable,
        },
    };
    (status, axum::Json(body)).into_response()
}

/// `POST /v1/messages` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSendRequest {
    #[serde(default)]
    from: String,
    recipients: Vec<JsonRecipient>,
    template: Option<JsonTemplate>,
    raw: Option<String>,
    raw_base64: Option<String>,
    #[serde(default)]
    pool: String,
    #[serde(default)]
    campaign: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    send_at: Option<String>,
    #[serde(default)]
    idempotency_key: String,
    priority: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tracking: crate::model::TrackingRequest,
    #[serde(default)]
    list: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecipient {
    address: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    substitutions: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTemplate {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    html: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBatch {
    messages: Vec<JsonSendRequest>,
}

impl JsonSendRequest {
    fn into_submission(self) -> Result<Submission, IngestError> {
        let content = match (self.template, self.raw, self.raw_base64) {
            (Some(t), None, None) => Content::Template {
                subject: t.subject,
                text: t.text,
                html: t.html,
            },
            (None, Some(raw), None) => Content::Raw(raw.into_bytes()),
            (None, None, Some(b64)) => Content::Raw(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|err| IngestError::invalid("raw_base64", err.to_string()))?,
            ),
            _ => {
                return Err(IngestError::invalid(
                    "template",
                    "give exactly one of `template`, `raw` and `raw_base64`",
                ));
            }
        };
        Ok(Submission {
            from: self.from,
            recipients: self
                .recipients
                .into_iter()
                .map(|r| RecipientInput {
                    address: r.address,
                    name: r.name,
                    substitutions: r.substitutions,
                })
                .collect(),
            content,
            pool: self.pool,
            campaign: self.campaign,
            tags: self.tags,
            send_at: self.send_at.as_deref().map(parse_time).transpose()?,
            idempotency_key: self.idempotency_key,
            priority: priority(self.priority.as_deref())?,
            headers: self.headers,
            trace: Default::default(),
            dsn_to: String::new(),
            tracking: self.tracking,
            list: self.list,
        })
    }
}

fn parse_time(text: &str) -> Result<std::time::SystemTime, IngestError> {
    let timestamp: prost_types::Timestamp = text.parse().map_err(|_| {
        IngestError::invalid("send_at", "must be RFC 3339, e.g. 2030-01-31T09:00:00Z")
    })?;
    std::time::SystemTime::try_from(timestamp)
        .map_err(|err| IngestError::invalid("send_at", err.to_string()))
}

fn priority(text: Option<&str>) -> Result<i32, IngestError> {
    Ok(match text {
        None | Some("") => 0,
        Some("bulk") => 1,
        Some("normal") => 2,
        Some("transactional") => 3,
        Some(other) => {
            return Err(IngestError::invalid(
                "priority",
                format!("{other:?} is not bulk, normal or transactional"),
            ));
        }
    })
}

#[derive(Debug, Serialize)]
struct JsonSendResponse {
    recipients: Vec<JsonAccepted>,
    replayed: bool,
}

#[derive(Debug, Serialize)]
struct JsonAccepted {
    address: String,
    message_id: String,
    suppressed: bool,
}

impl From<SendResponse> for JsonSendResponse {
    fn from(response: SendResponse) -> Self {
        Self {
            recipients: response
                .recipients
                .into_iter()
                .map(|r| JsonAccepted {
                    address: r.address,
                    message_id: r.message_id,
                    suppressed: r.suppressed,
                })
                .collect(),
            replayed: response.replayed,
        }
    }
}

#[derive(Debug, Serialize)]
struct JsonBatchResponse {
    responses: Vec<JsonSendResponse>,
}

#[derive(Debug, Serialize)]
struct JsonError {
    error: JsonErrorBody,
}

#[derive(Debug, Serialize)]
struct JsonErrorBody {
    code: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_index: Option<usize>,
    durable_message_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        for (method, path) in ROUTES {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing from openapi.json"
            );
        }
        let documented = doc["paths"].as_object().expect("paths").len();
        let routed: std::collections::HashSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
        assert_eq!(
            documented,
            routed.len(),
            "openapi.json documents a route the router lacks"
        );
    }

    #[test]
    fn json_priorities_and_times_are_checked() {
        assert_eq!(priority(Some("transactional")).expect("ok"), 3);
        assert!(priority(Some("urgent")).is_err());
        assert!(parse_time("2030-01-31T09:00:00Z").is_ok());
        let err = parse_time("tomorrow").expect_err("not rfc3339");
        assert!(err.to_string().contains("send_at"), "{err}");
    }
}
