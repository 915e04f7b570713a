//! Reading the events topic and the retry topics as a consumer-group
//! member. Every record read becomes a task (post its event to the
//! matching webhooks, or, from a retry topic, wait until it is due and
//! post again); a partition's offsets are committed up to its first
//! record whose task has not settled, so a `kill -9` re-reads exactly the
//! unsettled ones (at-least-once delivery).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message;
use sluice_log::{Commit, Delivery, GroupConsumer, LogConsumer, MessageLog, Rebalance};
use sluice_proto::v1::{Event, WebhookRetry};
use tokio::task::{AbortHandle, JoinSet};

use crate::WebhooksError;
use crate::attempt::{Post, Shared};

/// Which topic a member reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Events,
    Retry(usize),
}

/// The records of one partition read and not yet committed: offset →
/// the task still working on it (`None` once settled).
type Open = BTreeMap<i64, Option<AbortHandle>>;

/// One member's bookkeeping.
struct Member {
    consumer: LogConsumer,
    topic: String,
    open: BTreeMap<i32, Open>,
    assigned: BTreeSet<i32>,
    paused: bool,
    /// Each task ends with its record's place and whether it settled.
    tasks: JoinSet<(i32, i64, bool)>,
}

impl Member {
    /// Records read whose tasks have not settled (settled ones wait only
    /// for the next commit).
    fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Pauses every partition while too much is in flight (polls go on, so
    /// the member stays in its group), resumes them after.
    fn throttle(&mut self, max: usize) {
        let full = self.in_flight() >= max;
        if full != self.paused {
            for &p in &self.assigned {
                if full {
                    self.consumer.pause(&self.topic, p);
                } else {
                    self.consumer.resume(&self.topic, p);
                }
            }
            self.paused = full;
        }
    }

    fn rebalanced(&mut self) {
        for event in self.consumer.rebalances() {
            tracing::info!(topic = %self.topic, ?event, "webhook dispatcher partitions rebalanced");
            match event {
                Rebalance::Assigned(parts) => {
                    self.assigned.extend(parts.iter().map(|(_, p)| *p));
                    self.paused = false;
                }
                Rebalance::Revoked(parts) => {
                    for (_, p) in parts {
                        self.assigned.remove(&p);
                        // Its next owner reads the unsettled records again.
                        for task in self.open.remove(&p).unwrap_or_default().into_values() {
                            task.inspect(AbortHandle::abort);
                        }
                    }
                }
            }
        }
    }

    /// Commits, per partition, up to the first unsettled record.
    async fn commit(&mut self) {
        let mut commits = Vec::new();
        for (&partition, open) in &mut self.open {
            let mut next = None;
            while let Some(entry) = open.first_entry() {
                if entry.get().is_some() {
                    break;
                }
                next = Some(*entry.key() + 1);
                entry.remove();
            }
            if let Some(next_offset) = next {
                commits.push(Commit {
                    topic: self.topic.clone(),
                    partition,
                    next_offset,
                });
            }
        }
        if !commits.is_empty()
            && let Err(err) = self.consumer.commit(&commits).await
        {
            tracing::warn!(topic = %self.topic, error = %err, "offset commit failed; settled records may be posted again");
        }
    }
}

/// Reads `source`'s topic until the dispatcher stops.
pub(crate) async fn run(shared: Arc<Shared>, source: Source) -> Result<(), WebhooksError> {
    let config = &shared.config;
    let (topic, group) = match source {
        Source::Events => (config.events_topic.clone(), config.group.clone()),
        Source::Retry(tier) => {
            let delay = config.retry_delays[tier];
            (config.retry_topic(delay), config.retry_group(delay))
        }
    };
    let consumer = shared
        .log
        .subscribe(&group, std::slice::from_ref(&topic))
        .await?;
    tracing::info!(%topic, %group, "webhook dispatcher reading");
    let mut m = Member {
        consumer,
        topic,
        open: BTreeMap::new(),
        assigned: BTreeSet::new(),
        paused: false,
        tasks: JoinSet::new(),
    };
    let mut commit_tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let room = config.max_in_flight.saturating_sub(m.in_flight()).max(1);
        tokio::select! {
            () = shared.stop.cancelled() => break,
            Some(done) = m.tasks.join_next(), if !m.tasks.is_empty() => settle(&mut m, done),
            _ = commit_tick.tick() => m.commit().await,
            polled = m.consumer.poll_at_most(Duration::from_millis(500), room) => match polled {
                Ok(records) => {
                    for record in records {
                        start(&shared, &mut m, source, record);
                    }
                }
                Err(err) => {
                    tracing::warn!(topic = %m.topic, error = %err, "message log read failed; continuing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
        m.rebalanced();
        m.throttle(config.max_in_flight);
    }
    drain(&shared, &mut m).await;
    Ok(())
}

/// Marks a finished task's record settled. One that did not settle (the
/// dispatcher stopped first) keeps its place, so no commit passes it.
fn settle(m: &mut Member, done: Result<(i32, i64, bool), tokio::task::JoinError>) {
    if let Ok((partition, offset, true)) = done
        && let Some(slot) = m.open.get_mut(&partition).and_then(|o| o.get_mut(&offset))
    {
        *slot = None;
    }
}

fn start(shared: &Arc<Shared>, m: &mut Member, source: Source, record: Delivery) {
    let (partition, offset) = (record.partition, record.offset);
    let shared = shared.clone();
    let task = m.tasks.spawn(async move {
        let settled = match source {
            Source::Events => from_events(&shared, &record.payload).await,
            Source::Retry(_) => from_retry(&shared, &record.payload).await,
        };
        (partition, offset, settled)
    });
    m.open
        .entry(partition)
        .or_default()
        .insert(offset, Some(task));
}

/// Lets posts in flight finish within `drain_timeout` (retries still
/// waiting end at once, unsettled: they are read again), then commits what
/// settled.
async fn drain(shared: &Shared, m: &mut Member) {
    let drain = shared.config.drain_timeout.as_duration();
    let _ = tokio::time::timeout(drain, async {
        while let Some(done) = m.tasks.join_next().await {
            settle(m, done);
        }
    })
    .await;
    m.tasks.abort_all();
    m.commit().await;
}

/// An event read: attempt 1 to every matching webhook, concurrently;
/// whether every post settled.
async fn from_events(shared: &Shared, payload: &[u8]) -> bool {
    let Ok(mut event) = Event::decode(payload) else {
        shared.metrics.dropped_one("malformed");
        return true;
    };
    // Reports that arrive later name only the message (docs/webhooks.md);
    // their history is read only when some webhook takes their kind.
    if event.tenant.is_empty() && !shared.any_takes(event.kind) {
        return true;
    }
    if event.tenant.is_empty() && !complete(shared, &mut event).await {
        if shared.stop.is_cancelled() {
            return false;
        }
        shared.metrics.dropped_one("no_tenant");
        return true;
    }
    let first = SystemTime::now();
    let posts = shared.matching(&event).into_iter().map(|webhook_id| {
        shared.attempt(Post {
            tenant: event.tenant.clone(),
            webhook_id,
            event: event.clone(),
            made: 0,
            first,
        })
    });
    let settled = futures::future::join_all(posts).await;
    settled.into_iter().all(|s| s)
}

/// Fills in a late report's tenant from its message's history, when Query
/// is configured.
async fn complete(shared: &Shared, event: &mut Event) -> bool {
    match &shared.history {
        Some(history) if !event.message_id.is_empty() => {
            history.complete(event, &shared.stop).await
        }
        _ => false,
    }
}

/// A retry read: waits until it is due, then attempts again; whether it
/// settled.
async fn from_retry(shared: &Shared, payload: &[u8]) -> bool {
    let Ok(retry) = WebhookRetry::decode(payload) else {
        shared.metrics.dropped_one("malformed");
        return true;
    };
    let (Some(event), Some(first), Some(due)) = (retry.event, retry.first_attempt_at, retry.due_at)
    else {
        shared.metrics.dropped_one("malformed");
        return true;
    };
    let (Ok(first), Ok(due)) = (SystemTime::try_from(first), SystemTime::try_from(due)) else {
        shared.metrics.dropped_one("malformed");
        return true;
    };
    if let Ok(wait) = due.duration_since(SystemTime::now()) {
        tokio::select! {
            () = shared.stop.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
    }
    shared
        .attempt(Post {
            tenant: retry.tenant,
            webhook_id: retry.webhook_id,
            event,
            made: retry.attempt,
            first,
        })
        .await
}
