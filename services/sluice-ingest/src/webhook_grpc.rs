//! A tenant's webhooks over gRPC: `sluice.v1.TenantWebhooks`, under the same
//! API key as `sluice.v1.Ingest`; the calls of `webhook_api.rs` (HTTP), on
//! the same functions. Secrets are taken, never returned.

use std::sync::Arc;

use sluice_proto::v1::tenant_webhooks_server::TenantWebhooks;
use sluice_proto::v1::{
    DeleteTenantWebhookRequest, DeleteTenantWebhookResponse, ListTenantWebhooksRequest,
    ListTenantWebhooksResponse, PutTenantWebhookRequest, TenantWebhook, Webhook,
};
use tonic::{Request, Response, Status};

use crate::grpc::caller;
use crate::pipeline::Ingestor;
use crate::webhook_api::{delete_webhook, put_webhook, webhooks_of};

/// The service; the interceptor in front of it has found the tenant.
pub(crate) struct WebhookService {
    pub(crate) ingestor: Arc<Ingestor>,
}

/// A stored webhook as the tenant sees it: without its secret.
fn shown(hook: Webhook) -> TenantWebhook {
    TenantWebhook {
        id: hook.id,
        url: hook.url,
        events: hook.events,
        disabled: hook.disabled,
        disabled_reason: hook.disabled_reason,
    }
}

#[tonic::async_trait]
impl TenantWebhooks for WebhookService {
    async fn list_webhooks(
        &self,
        request: Request<ListTenantWebhooksRequest>,
    ) -> Result<Response<ListTenantWebhooksResponse>, Status> {
        let tenant = caller(&request)?;
        let hooks = webhooks_of(&self.ingestor, tenant.name()).await?;
        Ok(Response::new(ListTenantWebhooksResponse {
            webhooks: hooks.into_iter().map(shown).collect(),
        }))
    }

    async fn put_webhook(
        &self,
        request: Request<PutTenantWebhookRequest>,
    ) -> Result<Response<TenantWebhook>, Status> {
        let tenant = caller(&request)?;
        let given = request.into_inner();
        let hook = Webhook {
            id: given.id,
            url: given.url,
            events: given.events,
            secret: given.secret,
            ..Webhook::default()
        };
        let stored = put_webhook(&self.ingestor, tenant.name(), hook).await?;
        Ok(Response::new(shown(stored)))
    }

    async fn delete_webhook(
        &self,
        request: Request<DeleteTenantWebhookRequest>,
    ) -> Result<Response<DeleteTenantWebhookResponse>, Status> {
        let tenant = caller(&request)?;
        let id = request.into_inner().id;
        let deleted = delete_webhook(&self.ingestor, tenant.name(), id).await?;
        Ok(Response::new(DeleteTenantWebhookResponse { deleted }))
    }
}
