//! gRPC front door: `sluice.v1.Ingest`.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use sluice_proto::v1::ingest_server::{Ingest, IngestServer};
use sluice_proto::v1::tenant_suppressions_server::TenantSuppressionsServer;
use sluice_proto::v1::tenant_webhooks_server::TenantWebhooksServer;
use sluice_proto::v1::{SendBatchResponse, SendRequest, SendResponse, send_request};
use tonic::metadata::MetadataMap;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use crate::model::{Content, RecipientInput, Submission, TraceRequest};
use crate::pipeline::Ingestor;
use crate::suppression_grpc::SuppressionService;
use crate::tenant::Tenant;
use crate::webhook_grpc::WebhookService;
use crate::{IngestError, error::DURABLE_IDS_METADATA};

/// Largest `TenantSuppressions` request: 10,000 entries of the longest
/// address with their reasons.
const SUPPRESSIONS_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest webhook call: one webhook (a URL, a secret, some event kinds).
const WEBHOOKS_MAX_BYTES: usize = 64 * 1024;

/// Messages of one `SendBatch` stream processed concurrently.
const BATCH_CONCURRENCY: usize = 16;

/// Serves `sluice.v1.Ingest` (and `grpc.health.v1.Health`) on `incoming`
/// until `shutdown` is cancelled.
pub async fn serve(
    incoming: sluice_node::listen::Incoming,
    ingestor: Arc<Ingestor>,
    shutdown: sluice_node::CancellationToken,
) -> Result<(), IngestError> {
    let health = sluice_node::health::service(
        &["sluice.v1.Ingest", "sluice.v1.TenantSuppressions"],
        shutdown.clone(),
    )
    .await;
    let limits = ingestor.limits();
    let max = limits.max_message_bytes * 2 + 1024 * 1024;
    let shed = sluice_node::shed::Shed::new(limits.max_requests, sluice_node::shed::Protocol::Grpc)
        .counting(ingestor.metrics().shed_counter(crate::metrics::Door::Grpc));
    // A unary Send's message must arrive within `limits.body_timeout`;
    // SendBatch streams last as long as the client sends.
    let deadline = sluice_node::deadline::BodyDeadline::new(
        limits.body_timeout.into(),
        &["/sluice.v1.Ingest/SendBatch"],
    );
    let server = IngestServer::new(IngestService {
        ingestor: ingestor.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    // The key is checked from the request's metadata before tonic decodes
    // its body: an unauthenticated caller costs no decoding.
    let suppressions = TenantSuppressionsServer::new(SuppressionService {
        ingestor: ingestor.clone(),
    })
    .max_decoding_message_size(SUPPRESSIONS_MAX_BYTES);
    let suppressions = InterceptedService::new(suppressions, Authenticate(ingestor.clone()));
    let webhooks = TenantWebhooksServer::new(WebhookService {
        ingestor: ingestor.clone(),
    })
    .max_decoding_message_size(WEBHOOKS_MAX_BYTES);
    let webhooks = InterceptedService::new(webhooks, Authenticate(ingestor.clone()));
    let service = InterceptedService::new(server, Authenticate(ingestor));
    let reflection = sluice_node::health::reflection(&[sluice_proto::FILE_DESCRIPTOR_SET]);
    Server::builder()
        .layer(shed)
        .layer(deadline)
        .add_service(health)
        .add_service(reflection)
        .add_service(service)
        .add_service(suppressions)
        .add_service(webhooks)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .map_err(|err| IngestError::Internal(format!("gRPC server: {err}")))
}

struct IngestService {
    ingestor: Arc<Ingestor>,
}

/// The tenant the interceptor found for a request's API key.
#[derive(Clone)]
struct Caller(Arc<Tenant>);

/// Checks the API key and hands the tenant to the handler.
#[derive(Clone)]
struct Authenticate(Arc<Ingestor>);

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let tenant = authenticate(&self.0, request.metadata())?;
        request.extensions_mut().insert(Caller(tenant));
        Ok(request)
    }
}

/// The tenant of the request's `authorization: Bearer <api key>`.
fn authenticate(ingestor: &Ingestor, metadata: &MetadataMap) -> Result<Arc<Tenant>, Status> {
    let value = metadata.get("authorization").and_then(|v| v.to_str().ok());
    Ok(ingestor.directory().tenants().by_bearer(value)?)
}

/// The caller the interceptor authenticated (it runs before every call).
pub(crate) fn caller<T>(request: &Request<T>) -> Result<Arc<Tenant>, Status> {
    request
        .extensions()
        .get::<Caller>()
        .map(|c| c.0.clone())
        .ok_or_else(|| Status::unauthenticated("the request was not authenticated"))
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn send(&self, request: Request<SendRequest>) -> Result<Response<SendResponse>, Status> {
        let tenant = caller(&request)?;
        let trace = TraceRequest::from_metadata(request.metadata());
        let mut submission = submission(request.into_inner())?;
        submission.trace = trace;
        let door = crate::metrics::Door::Grpc;
        let response = self.ingestor.submit_via(door, &tenant, submission).await?;
        Ok(Response::new(response))
    }

    async fn send_batch(
        &self,
        request: Request<Streaming<SendRequest>>,
    ) -> Result<Response<SendBatchResponse>, Status> {
        let tenant = caller(&request)?;
        let trace = TraceRequest::from_metadata(request.metadata());
        let mut stream = request.into_inner();
        let mut pending = FuturesOrdered::new();
        let mut results = Vec::new();
        let mut read_error = None;
        let mut ended = false;
        // Reading the stream and finishing submissions go on together: a
        // submission that holds a signing permit must be polled to its end
        // while the loop waits for the client's next message, or another
        // stream's submissions wait on that permit and the client, blocked
        // on flow control, never sends the next message.
        loop {
            let read = !ended && pending.len() < BATCH_CONCURRENCY;
            if !read && pending.is_empty() {
                break;
            }
            tokio::select! {
                // `Streaming::message` is cancel-safe: the loser loses nothing.
                message = stream.message(), if read => match message {
                    Ok(Some(message)) => {
                        pending.push_back(self.submit_one(&tenant, message, &trace));
                    }
                    Ok(None) => ended = true,
                    Err(status) => {
                        read_error = Some(status);
                        ended = true;
                    }
                },
                Some(result) = pending.next(), if !pending.is_empty() => results.push(result),
                else => break,
            }
        }
        results.extend(pending.collect::<Vec<_>>().await);
        batch_answer(results, read_error)
    }
}

impl IngestService {
    async fn submit_one(
        &self,
        tenant: &Tenant,
        message: SendRequest,
        trace: &TraceRequest,
    ) -> Result<SendResponse, IngestError> {
        let mut submission = submission(message)?;
        submission.trace = trace.clone();
        self.ingestor
            .submit_via(crate::metrics::Door::Grpc, tenant, submission)
            .await
    }
}

/// Every response, or the first failure with the ids that are durable anyway.
fn batch_answer(
    results: Vec<Result<SendResponse, IngestError>>,
    read_error: Option<Status>,
) -> Result<Response<SendBatchResponse>, Status> {
    let mut durable: Vec<String> = Vec::new();
    let mut first_error = None;
    let mut responses = Vec::new();
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(response) => {
                durable.extend(response.recipients.iter().map(|r| r.message_id.clone()));
                responses.push(response);
            }
            Err(err) => {
                durable.extend(err.durable_ids().iter().cloned());
                first_error.get_or_insert((index, err));
            }
        }
    }
    if let Some((index, err)) = first_error {
        let mut status = Status::new(
            err.grpc_code(),
            format!(
                "requests[{index}]: {err}; the other requests' ids in metadata {DURABLE_IDS_METADATA} are durable"
            ),
        );
        if let Ok(value) = durable.join(",").parse() {
            status.metadata_mut().insert(DURABLE_IDS_METADATA, value);
        }
        return Err(status);
    }
    if let Some(status) = read_error {
        return Err(status);
    }
    Ok(Response::new(SendBatchResponse { responses }))
}

/// Converts the wire request into a submission.
pub fn submission(request: SendRequest) -> Result<Submission, IngestError> {
    let content = match request.content {
        Some(send_request::Content::Template(t)) => Content::Template {
            subject: t.subject,
            text: t.text,
            html: t.html,
        },
        Some(send_request::Content::Raw(raw)) => Content::Raw(raw),
        None => {
            return Err(IngestError::invalid(
                "content",
                "needs a template or a raw message",
            ));
        }
    };
    let send_at = request
        .send_at
        .map(std::time::SystemTime::try_from)
        .transpose()
        .map_err(|err| IngestError::invalid("send_at", err.to_string()))?;
    Ok(Submission {
        from: request.from,
        recipients: request
            .recipients
            .into_iter()
            .map(|r| RecipientInput {
                address: r.address,
                name: r.name,
                substitutions: r.substitutions.into_iter().collect(),
            })
            .collect(),
        content,
        pool: request.pool,
        campaign: request.campaign,
        tags: request.tags.into_iter().collect(),
        send_at,
        idempotency_key: request.idempotency_key,
        priority: request.priority,
        headers: request.headers.into_iter().collect(),
        trace: Default::default(),
        dsn_to: String::new(),
        tracking: request
            .tracking
            .map(|t| crate::model::TrackingRequest {
                opens: t.opens,
                clicks: t.clicks,
            })
            .unwrap_or_default(),
        list: request.list,
    })
}
