//! The webhook calls: one webhook of a tenant changed with the rest of the
//! tenant kept, as one read-modify-write under the service's lock (two
//! replicas changing one tenant at the same moment can still race; the
//! later write wins).

use sluice_proto::v1::{DeleteWebhookRequest, DisableWebhookRequest, PutWebhookRequest, Tenant};

use super::ControlService;
use crate::record::{Kind, Record};
use crate::validate_webhooks::{MAX_WEBHOOKS, id, webhook};
use crate::{ControlError, validate};

impl ControlService {
    /// Applies `change` to tenant `name` and stores the result when
    /// `change` says it changed anything; the tenant as it is then.
    async fn change_webhooks(
        &self,
        name: &str,
        change: impl FnOnce(&mut Tenant) -> Result<bool, ControlError>,
    ) -> Result<Tenant, ControlError> {
        validate::name("tenant", name)?;
        let _one_at_a_time = self.webhook_changes.lock().await;
        let mut tenant = match self.store.get(Kind::Tenant, name).await? {
            Some(Record::Tenant(t)) => t,
            _ => return Err(ControlError::NotFound(format!("no tenant `{name}`"))),
        };
        if change(&mut tenant)? {
            self.put(Record::Tenant(tenant.clone())).await?;
        }
        Ok(tenant)
    }

    /// DisableWebhook: marks the webhook disabled, with the reason, unless
    /// it already is (then the first reason stays).
    pub(super) async fn disable(&self, req: DisableWebhookRequest) -> Result<Tenant, ControlError> {
        id("id", &req.id)?;
        validate::text("reason", &req.reason)?;
        self.change_webhooks(&req.tenant, |tenant| {
            let name = tenant.name.clone();
            let hook = tenant
                .webhooks
                .iter_mut()
                .find(|w| w.id == req.id)
                .ok_or_else(|| {
                    ControlError::NotFound(format!("tenant `{name}` has no webhook `{}`", req.id))
                })?;
            if hook.disabled {
                return Ok(false);
            }
            hook.disabled = true;
            hook.disabled_reason = req.reason;
            Ok(true)
        })
        .await
    }

    /// PutWebhook: adds or replaces the webhook, enabled.
    pub(super) async fn put_one(&self, req: PutWebhookRequest) -> Result<Tenant, ControlError> {
        let given = req
            .webhook
            .ok_or_else(|| ControlError::invalid("webhook", "is required"))?;
        let hook = webhook("webhook.", &given)?;
        self.change_webhooks(&req.tenant, |tenant| {
            tenant.webhooks.retain(|w| w.id != hook.id);
            if tenant.webhooks.len() >= MAX_WEBHOOKS {
                return Err(ControlError::invalid(
                    "webhook.id",
                    format!("the tenant has {MAX_WEBHOOKS} webhooks already; delete one first"),
                ));
            }
            tenant.webhooks.push(sluice_proto::v1::Webhook {
                disabled: false,
                disabled_reason: String::new(),
                ..hook
            });
            tenant.webhooks.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(true)
        })
        .await
    }

    /// DeleteWebhook: whether the webhook was there.
    pub(super) async fn delete_one(&self, req: DeleteWebhookRequest) -> Result<bool, ControlError> {
        id("id", &req.id)?;
        let mut deleted = false;
        self.change_webhooks(&req.tenant, |tenant| {
            let before = tenant.webhooks.len();
            tenant.webhooks.retain(|w| w.id != req.id);
            deleted = tenant.webhooks.len() != before;
            Ok(deleted)
        })
        .await?;
        Ok(deleted)
    }
}
