//! A tenant's webhooks over HTTP JSON (docs/webhooks.md, "Registering a
//! webhook"): `GET /v1/webhooks` lists them (never their secrets),
//! `PUT /v1/webhooks/{id}` adds or replaces one, `DELETE
//! /v1/webhooks/{id}` removes one — for the tenant of the API key only. The
//! webhooks are control's (on the tenant record); this node enters the
//! tenant's changes there with its control token, and control checks each
//! field. The API key is checked before the body is read. The same calls
//! over gRPC are `webhook_grpc.rs`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sluice_control_client::Client;
use sluice_proto::v1::{DeleteWebhookRequest, ListTenantsRequest, PutWebhookRequest, Webhook};

use crate::IngestError;
use crate::http::{Authed, error_response, parse, read_body};
use crate::pipeline::Ingestor;

/// The routes, on the API's state.
pub(crate) fn routes() -> Router<Arc<Ingestor>> {
    Router::new()
        .route("/v1/webhooks", get(list))
        .route("/v1/webhooks/{id}", axum::routing::put(put).delete(remove))
}

/// A webhook as the API shows it.
#[derive(Debug, Serialize)]
struct Shown {
    id: String,
    url: String,
    /// Event kinds posted; empty: every kind.
    events: Vec<String>,
    disabled: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    disabled_reason: String,
}

impl From<&Webhook> for Shown {
    fn from(w: &Webhook) -> Self {
        Self {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w
                .events
                .iter()
                .map(|&k| sluice_proto::event_kind_name(k))
                .collect(),
            disabled: w.disabled,
            disabled_reason: w.disabled_reason.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Listed {
    webhooks: Vec<Shown>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    url: String,
    #[serde(default)]
    events: Vec<String>,
    secret: String,
}

#[derive(Debug, Serialize)]
struct Deleted {
    deleted: bool,
}

/// The event kinds `names` give; an unknown one is refused naming it.
fn kinds(names: &[String]) -> Result<Vec<i32>, IngestError> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            sluice_proto::event_kind_named(name)
                .map(i32::from)
                .ok_or_else(|| {
                    IngestError::invalid(
                        format!("events[{i}]"),
                        format!(
                            "`{name}` is not an event kind (delivered, bounced, complained, ...)"
                        ),
                    )
                })
        })
        .collect()
}

fn answer<T: Serialize>(result: Result<T, IngestError>) -> Response {
    match result {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(err) => error_response(&err, None),
    }
}

/// `call`'s answer from the first control replica that is available.
async fn on_control<T, F, Fut>(ingestor: &Ingestor, call: F) -> Result<T, IngestError>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let list = ingestor.suppression_list();
    let mut last = None;
    for client in list.clients() {
        match call(client.clone()).await {
            Ok(answer) => return Ok(answer.into_inner()),
            Err(status) if status.code() == tonic::Code::Unavailable => last = Some(status),
            Err(status) => return Err(control_error(&status)),
        }
    }
    Err(match last {
        Some(status) => control_error(&status),
        None => IngestError::NotConfigured(
            "webhooks are kept by control; this node takes its tenants from its own file \
             (operators: set control.addr to manage webhooks through ingest)"
                .into(),
        ),
    })
}

/// Control's refusal as this API's: a field of the webhook keeps its name
/// (`webhook.url` becomes `url`).
fn control_error(status: &tonic::Status) -> IngestError {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument => {
            let text = status.message();
            let (field, reason) = text
                .strip_prefix("invalid ")
                .and_then(|rest| rest.split_once(": "))
                .unwrap_or(("request", text));
            IngestError::invalid(field.trim_start_matches("webhook."), reason)
        }
        Code::Unauthenticated | Code::PermissionDenied => IngestError::ControlUnavailable(format!(
            "control refused this node's token ({}); operators: give ingest's \
             control.token_file a token with the node role",
            status.message()
        )),
        _ => IngestError::ControlUnavailable(status.message().to_owned()),
    }
}

/// Tenant `tenant`'s webhooks, secrets included (callers show them without).
pub(crate) async fn webhooks_of(
    ingestor: &Ingestor,
    tenant: &str,
) -> Result<Vec<Webhook>, IngestError> {
    let all = on_control(ingestor, |mut c| async move {
        c.list_tenants(ListTenantsRequest {}).await
    })
    .await?;
    let found = all.tenants.into_iter().find(|t| t.name == tenant);
    Ok(found.map(|t| t.webhooks).unwrap_or_default())
}

/// Adds or replaces `hook` for `tenant` in control; the webhook as stored.
pub(crate) async fn put_webhook(
    ingestor: &Ingestor,
    tenant: &str,
    hook: Webhook,
) -> Result<Webhook, IngestError> {
    let id = hook.id.clone();
    let request = PutWebhookRequest {
        tenant: tenant.to_owned(),
        webhook: Some(hook),
    };
    let stored = on_control(ingestor, |mut c| {
        let request = request.clone();
        async move { c.put_webhook(request).await }
    })
    .await?;
    let kept = stored.webhooks.into_iter().find(|w| w.id == id);
    kept.ok_or_else(|| IngestError::ControlUnavailable("control did not keep it".into()))
}

/// Removes `tenant`'s webhook `id`; whether it existed.
pub(crate) async fn delete_webhook(
    ingestor: &Ingestor,
    tenant: &str,
    id: String,
) -> Result<bool, IngestError> {
    let request = DeleteWebhookRequest {
        tenant: tenant.to_owned(),
        id,
    };
    let answer = on_control(ingestor, |mut c| {
        let request = request.clone();
        async move { c.delete_webhook(request).await }
    })
    .await?;
    Ok(answer.deleted)
}

async fn list(State(ingestor): State<Arc<Ingestor>>, Authed(tenant): Authed) -> Response {
    let result = webhooks_of(&ingestor, tenant.name())
        .await
        .map(|hooks| Listed {
            webhooks: hooks.iter().map(Shown::from).collect(),
        });
    answer(result)
}

async fn put(
    State(ingestor): State<Arc<Ingestor>>,
    Authed(tenant): Authed,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let result = async {
        let body = read_body(&ingestor, body).await?;
        let given: PutBody = parse(&body)?;
        let hook = Webhook {
            id,
            url: given.url,
            events: kinds(&given.events)?,
            secret: given.secret,
            ..Webhook::default()
        };
        let stored = put_webhook(&ingestor, tenant.name(), hook).await?;
        Ok(Shown::from(&stored))
    };
    answer(result.await)
}

async fn remove(
    State(ingestor): State<Arc<Ingestor>>,
    Authed(tenant): Authed,
    Path(id): Path<String>,
) -> Response {
    let result = delete_webhook(&ingestor, tenant.name(), id).await;
    answer(result.map(|deleted| Deleted { deleted }))
}

#[cfg(test)]
mod tests {
    use sluice_proto::v1::EventKind;

    use super::*;

    #[test]
    fn event_names_are_read_and_unknown_ones_named() {
        let names = ["bounced".to_owned(), "Complained".to_owned()];
        assert_eq!(
            kinds(&names).unwrap(),
            [EventKind::Bounced as i32, EventKind::Complained as i32]
        );
        for bad in ["opened_twice", "unspecified", "EVENT_KIND_BOUNCED"] {
            let err = kinds(&["delivered".into(), bad.into()]).unwrap_err();
            assert!(
                matches!(&err, IngestError::Invalid { field, .. } if field == "events[1]"),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn a_field_control_refuses_keeps_its_name() {
        let status = tonic::Status::invalid_argument("invalid webhook.url: has no host");
        let err = control_error(&status);
        assert!(
            matches!(&err, IngestError::Invalid { field, reason } if field == "url" && reason == "has no host"),
            "{err:?}"
        );
    }
}
