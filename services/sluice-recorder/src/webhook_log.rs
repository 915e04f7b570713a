//! The webhook delivery log (docs/webhooks.md): the dispatchers write every
//! attempt to the deliveries topic; the recorder reads it here and keeps
//! each attempt in the ledger, where Query's ListWebhookDeliveries reads
//! one webhook's latest attempts. Offsets are committed after the write,
//! and a rewritten attempt overwrites itself (keyed by time, event and
//! attempt), so a replay changes nothing.

use std::time::Duration;

use prost::Message;
use scylla::value::CqlTimestamp;
use sluice_log::{Commit, GroupConsumer, Log, LogConsumer, MessageLog};
use sluice_node::CancellationToken;
use sluice_proto::v1::WebhookAttempt;

use crate::ledger::{Ledger, Res};
use crate::ledger_cql::CqlLedger;
use crate::ledger_embedded::{EmbeddedLedger, fjall_err, now_ms, table};
use crate::ledger_keys::{self as keys, Key};
use crate::{AnyLedger, RecorderConfig, RecorderError};

/// Days of delivery log a read covers (today and the six before).
pub const DAYS: i64 = 7;
/// Most attempts one read returns.
pub const MAX_LIMIT: usize = 1000;

fn at_ms(a: &WebhookAttempt) -> i64 {
    a.at.as_ref()
        .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
}

/// The days a read covers, newest first.
fn days(now_ms: i64) -> Vec<String> {
    let today = now_ms.div_euclid(1000);
    (0..DAYS)
        .map(|back| crate::time::day_of(today - back * 86_400))
        .collect()
}

fn prefix(tenant: &str, webhook_id: &str) -> Key {
    Key::new()
        .raw(&[table::WEBHOOK_ATTEMPTS])
        .s(tenant)
        .s(webhook_id)
}

impl EmbeddedLedger {
    /// Every attempt as one durable write; newest first in key order.
    pub(crate) fn put_webhook_attempts_blocking(&self, attempts: &[WebhookAttempt]) -> Res<()> {
        let expires = now_ms().saturating_add(self.inner.status_ttl_ms);
        let mut rows = Vec::with_capacity(attempts.len() * 2);
        for a in attempts {
            let key = prefix(&a.tenant, &a.webhook_id)
                .i(i64::MAX - at_ms(a))
                .s(&a.event_id)
                .i(i64::from(a.attempt));
            rows.extend(Self::expiring(key, expires, &a.encode_to_vec()));
        }
        self.write(|_| Ok(((), rows)))
    }

    pub(crate) fn webhook_attempts_blocking(
        &self,
        tenant: &str,
        webhook_id: &str,
        limit: usize,
    ) -> Res<Vec<WebhookAttempt>> {
        let now = now_ms();
        // The start of the oldest day a read covers, as the CQL ledger reads.
        let oldest = (now.div_euclid(86_400_000) - (DAYS - 1)) * 86_400_000;
        let prefix = prefix(tenant, webhook_id).0;
        let mut out = Vec::new();
        for guard in self.inner.rows.prefix(prefix) {
            let (_, value) = guard
                .into_inner()
                .map_err(fjall_err("reading the webhook delivery log"))?;
            let Some(bytes) = keys::live(&value, now)? else {
                continue;
            };
            let attempt = WebhookAttempt::decode(bytes)
                .map_err(|e| RecorderError::Corrupt(format!("a webhook attempt: {e}")))?;
            if at_ms(&attempt) < oldest || out.len() == limit {
                break;
            }
            out.push(attempt);
        }
        Ok(out)
    }
}

impl CqlLedger {
    /// Every attempt, up to the ledger's concurrency at a time.
    pub async fn put_webhook_attempts(&self, attempts: &[WebhookAttempt]) -> Res<()> {
        for chunk in attempts.chunks(64) {
            let writes = chunk.iter().map(|a| {
                let values = (
                    a.tenant.as_str(),
                    a.webhook_id.as_str(),
                    crate::time::day_of(at_ms(a).div_euclid(1000)),
                    CqlTimestamp(at_ms(a)),
                    a.event_id.as_str(),
                    i32::try_from(a.attempt).unwrap_or(i32::MAX),
                    a.encode_to_vec(),
                    self.status_ttl,
                );
                async move {
                    self.session
                        .execute_unpaged(&self.insert_webhook_attempt, values)
                        .await
                        .map_err(|e| RecorderError::cql("writing a webhook attempt", e))
                }
            });
            futures::future::try_join_all(writes).await?;
        }
        Ok(())
    }

    /// The newest `limit` attempts, day partition by day partition.
    pub async fn webhook_attempts(
        &self,
        tenant: &str,
        webhook_id: &str,
        limit: usize,
    ) -> Res<Vec<WebhookAttempt>> {
        let mut out = Vec::new();
        for day in days(now_ms()) {
            let left = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
            let rows = self
                .session
                .execute_unpaged(
                    &self.select_webhook_attempts,
                    (tenant, webhook_id, day, left),
                )
                .await
                .map_err(|e| RecorderError::cql("reading the webhook delivery log", e))?
                .into_rows_result()
                .map_err(|e| RecorderError::cql("reading the webhook delivery log", e))?;
            for row in rows
                .rows::<(Vec<u8>,)>()
                .map_err(|e| RecorderError::cql("reading the webhook delivery log", e))?
            {
                let (bytes,) =
                    row.map_err(|e| RecorderError::cql("reading the webhook delivery log", e))?;
                out.push(
                    WebhookAttempt::decode(bytes.as_slice())
                        .map_err(|e| RecorderError::Corrupt(format!("a webhook attempt: {e}")))?,
                );
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

/// Reads the deliveries topic until `stop`, keeping every attempt.
pub(crate) async fn run(
    log: &Log,
    config: &RecorderConfig,
    ledger: &AnyLedger,
    stop: CancellationToken,
) -> Result<(), RecorderError> {
    let topic = config.webhook_deliveries_topic.clone();
    log.ensure_topics(std::slice::from_ref(&topic)).await?;
    let group = format!("{}.webhook-deliveries", config.group);
    let mut consumer = log.subscribe(&group, std::slice::from_ref(&topic)).await?;
    while !stop.is_cancelled() {
        let batch = tokio::select! {
            () = stop.cancelled() => break,
            polled = consumer.poll(Duration::from_secs(1)) => polled,
        };
        let batch = match batch {
            Ok(batch) if batch.is_empty() => continue,
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "webhook deliveries read failed; continuing");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let attempts: Vec<WebhookAttempt> = batch
            .iter()
            .filter_map(|d| WebhookAttempt::decode(d.payload.as_slice()).ok())
            .filter(|a| !a.tenant.is_empty() && !a.webhook_id.is_empty())
            .collect();
        if keep(ledger, &attempts, &stop).await {
            commit(&mut consumer, &Commit::after(&batch)).await;
        }
    }
    Ok(())
}

/// Writes `attempts`, trying again every second until it succeeds (true)
/// or `stop` (false: the batch is read again by the next run).
async fn keep(ledger: &AnyLedger, attempts: &[WebhookAttempt], stop: &CancellationToken) -> bool {
    while let Err(err) = ledger.put_webhook_attempts(attempts).await {
        tracing::warn!(error = %err, "cannot write the webhook delivery log; trying again in 1 s");
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    true
}

async fn commit(consumer: &mut LogConsumer, commits: &[Commit]) {
    if let Err(err) = consumer.commit(commits).await {
        tracing::warn!(error = %err, "webhook deliveries commit failed; the batch will be written again");
    }
}
