//! The submission pipeline every front door shares: idempotency, checks,
//! quota, suppression, rendering, DKIM, and the durable publish.

use sluice_node::trace::TARGET;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use tracing::Instrument;

use sluice_proto::v1::{AcceptedRecipient, EventKind, SendResponse};
use tokio::sync::Semaphore;

use crate::check::{self, Body, Checked};
use crate::compliance::{self, Unsubscribe, UnsubscribeTarget};
use crate::compose::Copy;
use crate::config::{IngestConfig, LimitsConfig};
use crate::directory::Directory;
use crate::idempotency::Begin;
use crate::model::Submission;
use crate::publish::{OutRecord, Publisher};
use crate::quota::LiveNodes;
use crate::records::Common;
use crate::shared_keys::{Ending, Idempotency};
use crate::suppression::Suppressions;
use crate::tenant::Tenant;
use crate::{IngestError, validate};

/// In-flight budget unit: permits count KiB.
const KIB: usize = 1024;

/// Shared state of an ingest node.
pub struct Ingestor {
    directory: RwLock<Arc<Directory>>,
    limits: LimitsConfig,
    unsubscribe: Unsubscribe,
    /// Signs open and click links; `None` without `tracking.base_url`.
    tracking: Option<crate::tracking::Tracking>,
    /// Signs the VERP return paths (the inbound role verifies them).
    verp: sluice_node::verp::Verp,
    publisher: Publisher,
    idempotency: Idempotency,
    in_flight: Arc<Semaphore>,
    budget_kib: usize,
    suppressions: Suppressions,
    suppression_list: crate::suppression_list::SuppressionList,
    live_nodes: Arc<LiveNodes>,
    metrics: Arc<crate::metrics::IngestMetrics>,
}

impl std::fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor")
            .field("directory", &self.directory())
            .field("suppressions", &self.suppressions)
            .finish()
    }
}

impl Ingestor {
    /// Builds the node's state from its configuration; records go to `log`.
    pub fn new(config: &IngestConfig, log: sluice_log::Log) -> Result<Self, IngestError> {
        let budget_kib = (config.limits.max_in_flight_bytes / KIB).max(1);
        Ok(Self {
            directory: RwLock::new(Arc::new(Directory::from_config(config)?)),
            limits: config.limits.clone(),
            unsubscribe: Unsubscribe::new(&config.unsubscribe.base_url, &config.unsubscribe.secret),
            verp: sluice_node::verp::Verp::new(&config.unsubscribe.secret),
            tracking: (!config.tracking.base_url.is_empty()).then(|| {
                crate::tracking::Tracking::new(
                    &config.tracking.base_url,
                    &config.unsubscribe.secret,
                )
            }),
            publisher: Publisher::new(config, log),
            idempotency: Idempotency::from_config(&config.idempotency, &config.tls)?,
            in_flight: Arc::new(Semaphore::new(budget_kib)),
            budget_kib,
            suppressions: Suppressions::None,
            suppression_list: Default::default(),
            live_nodes: Arc::default(),
            metrics: Arc::default(),
        })
    }

    /// The live ingest nodes this node's tenant quotas are divided by.
    pub fn live_nodes(&self) -> &Arc<LiveNodes> {
        &self.live_nodes
    }

    /// Keeps idempotency keys in `idempotency` instead of where the config says.
    #[must_use]
    pub fn with_idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = idempotency;
        self
    }

    /// Counts its work in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::IngestMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Also consults `suppressions` (the recorder's) for every submission.
    #[must_use]
    pub fn with_suppressions(mut self, suppressions: Suppressions) -> Self {
        self.suppressions = suppressions;
        self
    }

    /// Enters the tenants' own suppression changes in `list`.
    #[must_use]
    pub fn with_suppression_list(mut self, list: crate::suppression_list::SuppressionList) -> Self {
        self.suppression_list = list;
        self
    }

    /// Where the tenants' suppression API reads and writes.
    pub fn suppression_list(&self) -> &crate::suppression_list::SuppressionList {
        &self.suppression_list
    }

    /// The tenants, keys and pools in force, for authentication at the
    /// front doors and for each submission.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.read().expect("directory lock").clone()
    }

    /// Puts `directory` in force for every submission that starts from now.
    pub fn replace_directory(&self, directory: Directory) {
        *self.directory.write().expect("directory lock") = Arc::new(directory);
    }

    /// Whether the node can take submissions now (the message log answers
    /// and has room); else why not.
    pub async fn ready(&self) -> Result<(), String> {
        self.publisher.ready().await
    }

    /// The configured limits.
    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }

    /// The node's metrics (docs/metrics.md).
    pub fn metrics(&self) -> &Arc<crate::metrics::IngestMetrics> {
        &self.metrics
    }

    /// [`Ingestor::submit`], counted and timed as a submission through `door`.
    pub async fn submit_via(
        &self,
        door: crate::metrics::Door,
        tenant: &Tenant,
        sub: Submission,
    ) -> Result<SendResponse, IngestError> {
        let started = std::time::Instant::now();
        let span = accept_span(door, tenant, &sub);
        let recipients = sub.recipients.len();
        let result = self.submit(tenant, sub).instrument(span).await;
        let seconds = started.elapsed().as_secs_f64();
        self.metrics
            .answered(door, result.as_ref().map(|_| ()), seconds);
        if result.is_err() {
            self.metrics
                .tenant_recipients(tenant.name(), "refused", recipients);
        }
        result
    }

    /// Publishes one event made outside a submission (an unsubscribe, an
    /// open or a click from the link endpoints); returns once the log
    /// holds it.
    pub async fn publish_event(&self, event: sluice_proto::v1::Event) -> Result<(), IngestError> {
        let record = OutRecord {
            topic: self.publisher.events_topic().to_owned(),
            key: event.message_id.clone(),
            payload: prost::Message::encode_to_vec(&event),
            marks_durable: true,
        };
        self.publisher.publish(vec![record]).await
    }

    /// Signs and verifies open and click links, when this node has a
    /// `tracking.base_url`.
    pub fn tracking(&self) -> Option<&crate::tracking::Tracking> {
        self.tracking.as_ref()
    }

    /// Signs and verifies one-click unsubscribe tokens.
    pub fn unsubscribe(&self) -> &Unsubscribe {
        &self.unsubscribe
    }

    /// Accepts one submission; answers once every record is durable.
    pub async fn submit(
        &self,
        tenant: &Tenant,
        sub: Submission,
    ) -> Result<SendResponse, IngestError> {
        let key = sub.idempotency_key.clone();
        if key.is_empty() {
            return self.process(tenant, &sub, None).await;
        }
        validate::no_line_breaks("idempotency_key", &key)?;
        let (begin, held) = self.idempotency.begin(tenant.name(), &key).await?;
        let reuse = match begin {
            Begin::Replay(mut response) => {
                response.replayed = true;
                return Ok(response);
            }
            Begin::Busy => return Err(IngestError::InFlight(key)),
            Begin::Start(reuse) => reuse.filter(|ids| ids.len() == sub.recipients.len()),
        };
        let ids = reuse.unwrap_or_else(|| new_ids(sub.recipients.len()));
        let result = self.process(tenant, &sub, Some(ids.clone())).await;
        let outcome = match &result {
            Ok(response) => Ending::Answered(response.clone()),
            Err(IngestError::Unavailable { .. } | IngestError::SuppressionsUnavailable { .. }) => {
                Ending::Failed(ids)
            }
            Err(_) => Ending::Failed(Vec::new()),
        };
        self.idempotency
            .settle(tenant.name(), &key, held, outcome)
            .await;
        result
    }

    async fn process(
        &self,
        tenant: &Tenant,
        sub: &Submission,
        ids: Option<Vec<String>>,
    ) -> Result<SendResponse, IngestError> {
        tenant.check_active()?;
        let directory = self.directory();
        let checked = check::submission(sub, tenant, directory.pools(), &self.limits)?;
        check::tracking(sub, tenant, self.tracking.is_some())?;
        tenant.take_quota(sub.recipients.len(), self.live_nodes.get())?;
        let mut budget = self.reserve(checked.size_hint, sub.recipients.len())?;
        let suppressed = self.suppressed(tenant, sub).await?;
        let ids = ids.unwrap_or_else(|| new_ids(sub.recipients.len()));
        let now = SystemTime::now();
        let common = Common {
            tenant: tenant.name(),
            pool: &checked.pool,
            submission: sub,
            now,
            lifetime: self.limits.message_lifetime.into(),
        };
        let rendering = (&checked, ids.as_slice(), suppressed.as_slice(), now);
        let (sendable, messages) = self.render(tenant, sub, rendering, &mut budget)?;
        let signing = std::time::Instant::now();
        let signing_span = tracing::info_span!(
            target: TARGET, "dkim.sign", domain = %checked.from_domain, messages = messages.len()
        );
        let signed = directory
            .signers()
            .sign_all(&checked.from_domain, messages)
            .instrument(signing_span)
            .await
            .inspect_err(|_| {
                self.metrics.dkim_failures.inc();
            })?;
        let metrics = &self.metrics;
        metrics
            .signing_seconds
            .observe(signing.elapsed().as_secs_f64());
        let copies = Copies { sendable, signed };
        let records = self.records(tenant, sub, &checked, &ids, &common, &suppressed, copies);
        let appending = std::time::Instant::now();
        let append_span =
            tracing::info_span!(target: TARGET, "log.append", records = records.len());
        self.publisher
            .publish(records)
            .instrument(append_span)
            .await?;
        metrics
            .log_append_seconds
            .observe(appending.elapsed().as_secs_f64());
        let held = suppressed.iter().filter(|s| **s).count();
        metrics.recipients(suppressed.len() - held, held);
        let published = suppressed.len() - held;
        metrics.tenant_recipients(tenant.name(), "published", published);
        metrics.tenant_recipients(tenant.name(), "suppressed", held);
        Ok(response(sub, &ids, &suppressed))
    }

    /// Per recipient: suppressed by the tenant's configured list or by the
    /// recorder's suppressions (one check for the whole submission): the
    /// address itself and, when the submission names a list, the
    /// address's unsubscribe from that list.
    async fn suppressed(
        &self,
        tenant: &Tenant,
        sub: &Submission,
    ) -> Result<Vec<bool>, IngestError> {
        let mut suppressed: Vec<bool> = sub
            .recipients
            .iter()
            .map(|r| tenant.is_suppressed(&r.address))
            .collect();
        let scoped = |address: &str| {
            (!sub.list.is_empty())
                .then(|| sluice_links::unsubscribe::list_suppression(&sub.list, address))
        };
        let ask: Vec<String> = sub
            .recipients
            .iter()
            .zip(&suppressed)
            .filter(|(_, s)| !**s)
            .flat_map(|(r, _)| std::iter::once(r.address.clone()).chain(scoped(&r.address)))
            .collect();
        let learned = self.suppressions.check(tenant.name(), &ask).await?;
        for (flag, r) in suppressed.iter_mut().zip(&sub.recipients) {
            let in_list = scoped(&r.address).is_some_and(|s| learned.contains(&s));
            *flag = *flag || in_list || learned.contains(&r.address.to_lowercase());
        }
        Ok(suppressed)
    }

    fn reserve(
        &self,
        size_hint: usize,
        recipients: usize,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, IngestError> {
        let kib = (size_hint.saturating_mul(recipients) / KIB).max(1);
        if kib > self.budget_kib {
            return Err(IngestError::TooLarge {
                field: "recipients (message size × recipients)".into(),
                limit: self.budget_kib * KIB,
                actual: size_hint.saturating_mul(recipients),
            });
        }
        let kib = u32::try_from(kib).map_err(|_| IngestError::Backpressure("budget".into()))?;
        self.in_flight.try_acquire_many(kib).map_err(|_| {
            IngestError::Backpressure("too many bytes of mail in flight on this node".into())
        })
    }

    /// Makes `budget` cover `bytes` (it only grows).
    fn grow<'b>(
        &'b self,
        budget: &mut tokio::sync::SemaphorePermit<'b>,
        bytes: usize,
    ) -> Result<(), IngestError> {
        let need = bytes.div_ceil(KIB);
        let held = budget.num_permits();
        if need <= held {
            return Ok(());
        }
        if need > self.budget_kib {
            return Err(IngestError::TooLarge {
                field: "recipients (rendered copies)".into(),
                limit: self.budget_kib * KIB,
                actual: bytes,
            });
        }
        let more =
            u32::try_from(need - held).map_err(|_| IngestError::Backpressure("budget".into()))?;
        let extra = self.in_flight.try_acquire_many(more).map_err(|_| {
            IngestError::Backpressure("too many bytes of mail in flight on this node".into())
        })?;
        budget.merge(extra);
        Ok(())
    }

    /// Renders the copies of every recipient that is not suppressed; any
    /// error aborts the whole submission before anything is published.
    /// What rendered copies hold counts against the in-flight budget: when
    /// they pass what was reserved from the submission's size, the rest is
    /// reserved as they are made (or the submission is refused).
    fn render<'b>(
        &'b self,
        tenant: &Tenant,
        sub: &Submission,
        (checked, ids, suppressed, now): (&Checked, &[String], &[bool], SystemTime),
        budget: &mut tokio::sync::SemaphorePermit<'b>,
    ) -> Result<(Vec<usize>, Vec<Vec<u8>>), IngestError> {
        let mut rendered = 0usize;
        let now_unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut sendable = Vec::new();
        let mut messages = Vec::new();
        for (index, recipient) in sub.recipients.iter().enumerate() {
            if suppressed[index] {
                continue;
            }
            let target = UnsubscribeTarget {
                tenant: tenant.name().to_owned(),
                recipient: recipient.address.clone(),
                message_id: ids[index].clone(),
                list: sub.list.clone(),
            };
            let mut extra: Vec<(&'static str, String)> = self.unsubscribe.headers(&target).into();
            // RFC 2369's mail alternative, taken by the inbound MX.
            let bounce_domain = tenant.bounce_domain(&checked.from_domain);
            let mailto = self.verp.unsubscribe_address(&ids[index], bounce_domain);
            extra[0].1 = format!("{}, <mailto:{mailto}>", extra[0].1);
            extra.push((
                "Feedback-ID",
                compliance::feedback_id(&sub.campaign, tenant.name(), &checked.pool),
            ));
            let copy = Copy {
                index,
                recipient,
                message_id: &ids[index],
                from_domain: &checked.from_domain,
                now_unix,
                extra,
                tracking: self.tracking_plan(tenant, sub, &recipient.address, &ids[index]),
            };
            let message = match &checked.body {
                Body::Template { from, templates } => {
                    templates.message(from, &sub.headers, copy)?
                }
                Body::Raw(raw) => raw.copy(copy),
            };
            check::rendered_size(index, message.len(), self.limits.max_message_bytes)?;
            rendered += message.len();
            self.grow(budget, rendered)?;
            sendable.push(index);
            messages.push(message);
        }
        Ok((sendable, messages))
    }

    /// What to track in one recipient's copy, when the submission asked.
    fn tracking_plan(
        &self,
        tenant: &Tenant,
        sub: &Submission,
        recipient: &str,
        message_id: &str,
    ) -> Option<crate::tracking_html::Plan<'_>> {
        let tracking = self.tracking.as_ref().filter(|_| sub.tracking.any())?;
        Some(crate::tracking_html::Plan {
            tracking,
            copy: crate::tracking::Copy {
                tenant: tenant.name().to_owned(),
                campaign: sub.campaign.clone(),
                recipient: recipient.to_owned(),
                message_id: message_id.to_owned(),
            },
            opens: sub.tracking.opens,
            clicks: sub.tracking.clicks,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn records(
        &self,
        tenant: &Tenant,
        sub: &Submission,
        checked: &Checked,
        ids: &[String],
        common: &Common<'_>,
        suppressed: &[bool],
        copies: Copies,
    ) -> Vec<OutRecord> {
        let events = self.publisher.events_topic();
        let outbound = self.publisher.outbound_topic(&checked.pool);
        let bounce_domain = tenant.bounce_domain(&checked.from_domain);
        let mut records = Vec::with_capacity(sub.recipients.len() * 2);
        for (index, content) in copies.sendable.into_iter().zip(copies.signed) {
            let address = &sub.recipients[index].address;
            let return_path = self.verp.return_path(&ids[index], bounce_domain);
            records.push(common.envelope(
                outbound.clone(),
                &ids[index],
                address,
                return_path,
                content,
            ));
            records.push(common.event(events, EventKind::Accepted, &ids[index], address));
        }
        for (index, recipient) in sub.recipients.iter().enumerate() {
            if suppressed[index] {
                records.push(common.event(
                    events,
                    EventKind::Suppressed,
                    &ids[index],
                    &recipient.address,
                ));
            }
        }
        records
    }
}

/// The span of one submission: a child of the caller's span when it sent a
/// `traceparent`, always sampled when the caller or the tenant asks.
fn accept_span(door: crate::metrics::Door, tenant: &Tenant, sub: &Submission) -> tracing::Span {
    let force = sub.trace.force || tenant.traced();
    let span = tracing::info_span!(
        target: TARGET, "ingest.accept",
        tenant = tenant.name(), door = door.label(), recipients = sub.recipients.len(),
        sluice.force_trace = force,
    );
    sluice_node::trace::with_traceparent(&span, sub.trace.parent.as_deref());
    span
}

/// The rendered, signed copies and the recipient index of each.
struct Copies {
    sendable: Vec<usize>,
    signed: Vec<Vec<u8>>,
}

/// One message id per recipient, each 128 random bits from the system's
/// secure generator, written as 26 Crockford base32 characters (the length
/// and alphabet of a ULID, so every id parses as one). Ids of one submission
/// are independent: one message's id says nothing about another's.
pub(crate) fn new_ids(n: usize) -> Vec<String> {
    use ring::rand::{SecureRandom, SystemRandom};
    let rng = SystemRandom::new();
    (0..n)
        .map(|_| {
            let mut bytes = [0u8; 16];
            rng.fill(&mut bytes)
                .expect("the system's secure random generator failed");
            ulid::Ulid::from(u128::from_be_bytes(bytes)).to_string()
        })
        .collect()
}

fn response(sub: &Submission, ids: &[String], suppressed: &[bool]) -> SendResponse {
    SendResponse {
        recipients: sub
            .recipients
            .iter()
            .zip(ids)
            .zip(suppressed)
            .map(|((r, id), suppressed)| AcceptedRecipient {
                address: r.address.clone(),
                message_id: id.clone(),
                suppressed: *suppressed,
            })
            .collect(),
        replayed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::new_ids;

    #[test]
    fn ids_are_ulid_shaped_and_independent() {
        let ids = new_ids(64);
        assert!(ids.iter().all(|id| {
            id.len() == 26
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
                && ulid::Ulid::from_string(id).is_ok()
        }));
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        // A monotonic ULID generator makes neighbours share their first
        // 16 characters (the time and most of the random part); random ids
        // share a prefix of 2 or more characters by chance only rarely.
        let shared =
            |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        let close = ids.windows(2).filter(|w| shared(&w[0], &w[1]) >= 3).count();
        assert!(close <= 1, "neighbouring ids look related: {ids:?}");
    }
}
