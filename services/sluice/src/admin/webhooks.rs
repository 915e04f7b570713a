//! `sluice admin webhook ...`: a tenant's webhooks (docs/webhooks.md). They
//! live on the tenant record; these commands change one webhook
//! (PutWebhook, DeleteWebhook) and keep the rest of the tenant.

use anyhow::{Context, anyhow};
use clap::Subcommand;
use serde_json::json;
use sluice_proto::v1::{
    DeleteWebhookRequest, EventKind, ListTenantsRequest, PutWebhookRequest, Tenant, Webhook,
};

use super::Client;

/// `sluice admin webhook ...`
#[derive(Debug, Clone, Subcommand)]
pub enum WebhookCommand {
    /// List a tenant's webhooks (secrets are not shown).
    #[command(after_help = "Example:\n  sluice admin webhook list acme")]
    List {
        /// Tenant name.
        tenant: String,
    },
    /// Add or replace a webhook (and enable it again if it was disabled).
    #[command(after_help = "Examples:\n  \
        head -c 32 /dev/urandom | base64 > hook.secret   # give the receiver the same file\n  \
        sluice admin webhook put acme crm https://hooks.acme.example/sluice \\\n      \
        --secret-file hook.secret --event bounced --event complained --event unsubscribed\n  \
        sluice admin webhook put acme all https://hooks.acme.example/all --secret-file hook.secret")]
    Put {
        /// Tenant name.
        tenant: String,
        /// Webhook id within the tenant: a-z, 0-9, `-`, `_`.
        id: String,
        /// Where events are posted (https; http only for receivers on a
        /// private network).
        url: String,
        /// File holding the signing secret (24 to 256 characters; one
        /// trailing newline is ignored); `-` reads it from standard input.
        #[arg(long)]
        secret_file: String,
        /// An event kind to post (repeat); none: every kind. One of
        /// accepted, delivered, deferred, bounced, expired, suppressed,
        /// complained, opened, clicked, unsubscribed, webhook_disabled.
        #[arg(long = "event", value_parser = parse_kind)]
        events: Vec<EventKind>,
    },
    /// Remove a webhook.
    #[command(after_help = "Example:\n  sluice admin webhook delete acme crm")]
    Delete {
        /// Tenant name.
        tenant: String,
        /// Webhook id.
        id: String,
    },
}

/// An event kind by its lower-case name (`delivered`, `webhook_disabled`).
pub fn parse_kind(name: &str) -> Result<EventKind, String> {
    sluice_proto::event_kind_named(name)
        .ok_or_else(|| format!("`{name}` is not an event kind (delivered, bounced, ...)"))
}

fn kind_name(kind: i32) -> String {
    sluice_proto::event_kind_name(kind)
}

/// The stored tenant `name`, if there is one.
async fn stored_tenant(client: &mut Client, name: &str) -> anyhow::Result<Option<Tenant>> {
    let list = client
        .list_tenants(ListTenantsRequest {})
        .await?
        .into_inner();
    Ok(list.tenants.into_iter().find(|t| t.name == name))
}

/// The webhooks tenant `name` has now (none for a new tenant).
pub(super) async fn stored(client: &mut Client, name: &str) -> anyhow::Result<Vec<Webhook>> {
    Ok(stored_tenant(client, name)
        .await?
        .map(|t| t.webhooks)
        .unwrap_or_default())
}

fn read_secret(path: &str) -> anyhow::Result<String> {
    let mut text = if path == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the secret from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading --secret-file {path}"))?
    };
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

pub(super) async fn execute(
    client: &mut Client,
    cmd: WebhookCommand,
    json: bool,
) -> anyhow::Result<String> {
    match cmd {
        WebhookCommand::List { tenant } => {
            let stored = stored_tenant(client, &tenant).await?.ok_or_else(|| {
                anyhow!("no tenant `{tenant}`; create it with `sluice admin tenant put`")
            })?;
            Ok(render(&stored.webhooks, json))
        }
        WebhookCommand::Put {
            tenant,
            id,
            url,
            secret_file,
            events,
        } => {
            let webhook = Webhook {
                id,
                url,
                events: events.into_iter().map(i32::from).collect(),
                secret: read_secret(&secret_file)?,
                ..Webhook::default()
            };
            let request = PutWebhookRequest {
                tenant,
                webhook: Some(webhook),
            };
            let put = client.put_webhook(request).await?.into_inner();
            Ok(render(&put.webhooks, json))
        }
        WebhookCommand::Delete { tenant, id } => {
            let request = DeleteWebhookRequest {
                tenant: tenant.clone(),
                id: id.clone(),
            };
            if !client.delete_webhook(request).await?.into_inner().deleted {
                return Err(anyhow!("tenant `{tenant}` has no webhook `{id}`"));
            }
            let left = stored(client, &tenant).await?;
            Ok(render(&left, json))
        }
    }
}

/// A table (or JSON) of webhooks, secrets left out.
pub(super) fn render(hooks: &[Webhook], json: bool) -> String {
    let kinds = |w: &Webhook| {
        if w.events.is_empty() {
            "all".to_owned()
        } else {
            w.events
                .iter()
                .map(|&k| kind_name(k))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if json {
        let list: Vec<_> = hooks
            .iter()
            .map(|w| {
                json!({"id": w.id, "url": w.url, "events": w.events.iter().map(|&k| kind_name(k)).collect::<Vec<_>>(),
                       "disabled": w.disabled, "disabled_reason": w.disabled_reason})
            })
            .collect();
        return format!("{}\n", serde_json::Value::from(list));
    }
    let mut out = String::from("id\turl\tevents\tstate\n");
    for w in hooks {
        let state = if w.disabled {
            format!("disabled: {}", w.disabled_reason)
        } else {
            "enabled".into()
        };
        out.push_str(&format!("{}\t{}\t{}\t{state}\n", w.id, w.url, kinds(w)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_by_name_both_ways() {
        assert_eq!(parse_kind("bounced"), Ok(EventKind::Bounced));
        assert_eq!(
            parse_kind("webhook_disabled"),
            Ok(EventKind::WebhookDisabled)
        );
        assert!(parse_kind("unspecified").is_err());
        assert!(parse_kind("bogus").unwrap_err().contains("`bogus`"));
        assert_eq!(kind_name(EventKind::Complained.into()), "complained");
    }

    #[test]
    fn secrets_are_never_rendered() {
        let hook = Webhook {
            id: "crm".into(),
            url: "https://h.example/x".into(),
            secret: "very-secret-value-0123456789".into(),
            events: vec![EventKind::Bounced.into()],
            ..Default::default()
        };
        for json in [false, true] {
            let text = render(std::slice::from_ref(&hook), json);
            assert!(text.contains("crm") && text.contains("bounced"), "{text}");
            assert!(!text.contains("very-secret"), "{text}");
        }
    }
}
