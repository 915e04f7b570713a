//! One attempt to post one event to one webhook, and what follows a
//! failure: a record in the next retry topic, or, after the retry window,
//! the webhook disabled and a `webhook_disabled` event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use sluice_control_client::{Client, ClusterConfig};
use sluice_log::{Log, MessageLog};
use sluice_node::CancellationToken;
use sluice_proto::v1::{
    DisableWebhookRequest, Event, EventKind, Webhook, WebhookAttempt, WebhookRetry,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::post::Failure;
use crate::schedule::{Next, after_failure};
use crate::{WebhooksConfig, body, metrics::WebhookMetrics, sign};

/// What every attempt shares.
pub(crate) struct Shared {
    pub config: WebhooksConfig,
    pub log: Log,
    pub poster: crate::post::Poster,
    pub tenants: watch::Receiver<Arc<ClusterConfig>>,
    pub control: Vec<Client>,
    pub posts: Semaphore,
    pub metrics: Arc<WebhookMetrics>,
    pub delays: Vec<Duration>,
    pub stop: CancellationToken,
    /// Where events without a tenant are completed (`query_addr`).
    pub history: Option<crate::history::History>,
    /// Which webhooks are busy or failing.
    pub health: crate::health::Health,
}

/// One post to make: the event, the webhook, and its history.
pub(crate) struct Post {
    pub tenant: String,
    pub webhook_id: String,
    pub event: Event,
    /// Attempts made before this one.
    pub made: u32,
    pub first: SystemTime,
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Shared {
    /// The webhooks of `event`'s tenant that take its kind.
    pub fn matching(&self, event: &Event) -> Vec<String> {
        let tenants = self.tenants.borrow();
        let Some(tenant) = tenants.tenants.get(&event.tenant) else {
            return Vec::new();
        };
        tenant
            .webhooks
            .iter()
            .filter(|w| w.events.is_empty() || w.events.contains(&event.kind))
            .map(|w| w.id.clone())
            .collect()
    }

    /// Whether any enabled webhook of any tenant takes events of `kind`
    /// (a report naming only its message is looked up only then).
    pub fn any_takes(&self, kind: i32) -> bool {
        let tenants = self.tenants.borrow();
        tenants
            .tenants
            .values()
            .flat_map(|t| &t.webhooks)
            .any(|w| !w.disabled && (w.events.is_empty() || w.events.contains(&kind)))
    }

    /// Webhook `id` of `tenant` as control has it now.
    fn webhook(&self, tenant: &str, id: &str) -> Option<Webhook> {
        let tenants = self.tenants.borrow();
        let tenant = tenants.tenants.get(tenant)?;
        tenant.webhooks.iter().find(|w| w.id == id).cloned()
    }

    /// Makes `post`'s attempt and settles it: delivered, written to a retry
    /// topic, or given up. Returns once the outcome is durable (a retry
    /// record appended): true; false when the dispatcher stopped first
    /// (the record that led here must be read again).
    pub async fn attempt(&self, post: Post) -> bool {
        let Some(hook) = self.webhook(&post.tenant, &post.webhook_id) else {
            self.metrics.dropped_one("removed");
            return true;
        };
        if hook.disabled {
            self.metrics.dropped_one("disabled");
            return true;
        }
        let slot = match self.admit(&post).await {
            Ok(slot) => slot,
            Err(why) => return self.hold(post, why).await,
        };
        let started = std::time::Instant::now();
        let outcome = self.send(&hook, &post).await;
        let took = started.elapsed();
        let key = (post.tenant.as_str(), post.webhook_id.as_str());
        self.health
            .settle(key, outcome.is_ok(), std::time::Instant::now());
        drop(slot);
        self.metrics.post(outcome.is_ok());
        let failure = match outcome {
            Ok(status) => {
                self.log_attempt(&post, (status, ""), took, "delivered")
                    .await;
                return true;
            }
            Err(failure) => failure,
        };
        let now = SystemTime::now();
        let window = self.config.retry_window.as_duration();
        let next = after_failure(&self.delays, window, post.made + 1, post.first, now);
        let outcome = match next {
            Next::Retry { .. } => "retrying",
            Next::GiveUp => "gave_up",
        };
        let answer = (failure.status, failure.reason.as_str());
        self.log_attempt(&post, answer, took, outcome).await;
        match next {
            Next::Retry { tier, due } => {
                let made = post.made + 1;
                self.retry(post, (tier, due), failure.reason, made).await
            }
            Next::GiveUp => {
                self.give_up(&hook, post, failure.reason).await;
                true
            }
        }
    }

    /// One of the webhook's slots, waited for at most the post timeout;
    /// why not, when the post should wait in a retry topic instead: the
    /// webhook is `busy` (its slots stayed taken) or `failing` (a first
    /// attempt after failures in a row).
    async fn admit(&self, post: &Post) -> Result<OwnedSemaphorePermit, &'static str> {
        let key = (post.tenant.as_str(), post.webhook_id.as_str());
        let failing = || post.made == 0 && self.health.failing(key, std::time::Instant::now());
        if failing() {
            return Err("failing");
        }
        let slots = self.health.slot(key);
        let wait = self.config.timeout.as_duration();
        let Ok(Ok(slot)) = tokio::time::timeout(wait, slots.acquire_owned()).await else {
            return Err("busy");
        };
        // Its last posts may have failed while this one waited.
        if failing() {
            return Err("failing");
        }
        Ok(slot)
    }

    /// A post not made now (its webhook is busy or failing): it waits in a
    /// retry topic with its attempts unchanged, the delay of the tier it
    /// would wait in after its last failure (the first for a new post).
    async fn hold(&self, post: Post, reason: &str) -> bool {
        self.metrics.skipped_one(reason);
        let tier = (post.made as usize)
            .saturating_sub(1)
            .min(self.delays.len() - 1);
        let due = SystemTime::now() + self.delays[tier];
        let error = format!("not tried: the webhook is {reason}");
        let made = post.made;
        self.retry(post, (tier, due), error, made).await
    }

    /// Writes the attempt to the delivery log's topic (the recorder keeps
    /// it for Query's ListWebhookDeliveries).
    async fn log_attempt(
        &self,
        post: &Post,
        (status, error): (u16, &str),
        took: Duration,
        outcome: &str,
    ) {
        let record = WebhookAttempt {
            tenant: post.tenant.clone(),
            webhook_id: post.webhook_id.clone(),
            event_id: post.event.event_id.clone(),
            event_type: body::kind_name(post.event.kind),
            message_id: post.event.message_id.clone(),
            attempt: post.made + 1,
            at: Some(SystemTime::now().into()),
            status: status.into(),
            error: error.chars().take(1000).collect(),
            duration_ms: u32::try_from(took.as_millis()).unwrap_or(u32::MAX),
            outcome: outcome.to_owned(),
        };
        let key = format!("{}/{}", post.tenant, post.webhook_id);
        let topic = self.config.deliveries_topic.clone();
        // Best effort when the dispatcher stops: the post's own outcome
        // does not wait for its log line.
        let _logged = self
            .append_until_stopped(&topic, key.as_bytes(), &record.encode_to_vec())
            .await;
    }

    async fn send(&self, hook: &Webhook, post: &Post) -> Result<u16, Failure> {
        let url = url::Url::parse(&hook.url).map_err(|e| format!("bad URL: {e}"))?;
        let body = body::render(&post.event);
        let now = unix(SystemTime::now());
        let headers = [
            (
                sign::HEADER,
                sign::signature(hook.secret.as_bytes(), now, &body),
            ),
            ("sluice-event-id", post.event.event_id.clone()),
            ("sluice-event-type", body::kind_name(post.event.kind)),
            ("sluice-attempt", (post.made + 1).to_string()),
        ];
        let _permit = self
            .posts
            .acquire()
            .await
            .map_err(|e| Failure::from(e.to_string()))?;
        let outcome = self.poster.post(&url, &headers, Bytes::from(body)).await;
        if let Err(failure) = &outcome {
            tracing::debug!(tenant = %post.tenant, webhook = %hook.id, attempt = post.made + 1,
                error = %failure.reason, "webhook post failed");
        }
        outcome
    }

    /// Appends the retry record (`made` attempts so far), trying again
    /// until it is durable (true) or the dispatcher stops (false: the
    /// record that led here is read again).
    async fn retry(
        &self,
        post: Post,
        (tier, due): (usize, SystemTime),
        error: String,
        made: u32,
    ) -> bool {
        let topic = self.config.retry_topic(self.config.retry_delays[tier]);
        let key = format!("{}/{}", post.tenant, post.webhook_id);
        let record = WebhookRetry {
            tenant: post.tenant,
            webhook_id: post.webhook_id,
            event: Some(post.event),
            attempt: made,
            first_attempt_at: Some(post.first.into()),
            due_at: Some(due.into()),
            last_error: error,
        }
        .encode_to_vec();
        let appended = self
            .append_until_stopped(&topic, key.as_bytes(), &record)
            .await;
        if appended {
            self.metrics.retries.inc();
        }
        appended
    }

    /// Appends until it is durable (true) or the dispatcher stops (false).
    async fn append_until_stopped(&self, topic: &str, key: &[u8], payload: &[u8]) -> bool {
        loop {
            match self.log.append(topic, key, payload).await {
                Ok(_) => return true,
                Err(err) => {
                    tracing::warn!(%topic, error = %err, "cannot append to the message log; trying again in 1 s");
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// The retry window is over: disable the webhook in control and say so
    /// with a `webhook_disabled` event.
    async fn give_up(&self, hook: &Webhook, post: Post, error: String) {
        self.metrics.dropped_one("gave_up");
        let reason = format!(
            "posts failed for {} since {}; last: {error}",
            self.config.retry_window,
            prost_types::Timestamp::from(post.first)
        );
        let request = DisableWebhookRequest {
            tenant: post.tenant.clone(),
            id: hook.id.clone(),
            reason: reason.chars().take(1000).collect(),
        };
        let mut disabled = false;
        for client in &self.control {
            match client.clone().disable_webhook(request.clone()).await {
                Ok(tenant) => {
                    // Another post of the webhook may have given up first:
                    // only the one whose reason was kept tells.
                    disabled = tenant.into_inner().webhooks.iter().any(|w| {
                        w.id == hook.id && w.disabled && w.disabled_reason == request.reason
                    });
                    break;
                }
                Err(status) => tracing::warn!(%status, "control did not disable the webhook"),
            }
        }
        if !disabled {
            // Already disabled, or control did not answer (the webhook's
            // other retries will give up too and try again).
            return;
        }
        self.metrics.disabled.inc();
        tracing::warn!(tenant = %post.tenant, webhook = %hook.id, url = %hook.url, %reason,
            "webhook disabled; put it again (sluice admin webhook put) once the receiver works");
        let notice = Event {
            event_id: ulid::Ulid::new().to_string(),
            kind: EventKind::WebhookDisabled.into(),
            message_id: post.event.message_id.clone(),
            tenant: post.tenant,
            at: Some(SystemTime::now().into()),
            tags: HashMap::from([
                ("webhook".to_owned(), hook.id.clone()),
                ("url".to_owned(), hook.url.clone()),
                ("error".to_owned(), error.chars().take(500).collect()),
            ]),
            ..Default::default()
        };
        let topic = self.config.events_topic.clone();
        self.append_until_stopped(
            &topic,
            notice.message_id.as_bytes(),
            &notice.encode_to_vec(),
        )
        .await;
    }
}
