//! Tenant quotas across ingest nodes: every node that shares its keys
//! through the recorder's Query service heartbeats to it every
//! `quota.heartbeat_interval` and learns how many ingest nodes are alive;
//! each tenant's limiter on this node then allows [`share`]`(rate_quota,
//! live)` recipients per second. A node that cannot reach Query keeps the
//! last count; a node without Query (one node, `sluice dev`) counts itself
//! only and keeps the whole quota. See docs/ingest.md, "Quotas across nodes".

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sluice_control_client::Bearer;
use sluice_node::CancellationToken;
use sluice_proto::v1::IngestHeartbeatRequest;
use sluice_proto::v1::query_client::QueryClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::IngestError;
use crate::config::IngestConfig;
use crate::shared_keys::KeysFuture;

/// This node's part of a tenant's `rate_quota` (recipients per second)
/// when `live` ingest nodes share it: `quota / live` rounded up, at least 1;
/// 0 (unlimited) stays 0. Pure: tested below.
pub fn share(quota: u32, live: u32) -> u32 {
    if quota == 0 {
        return 0;
    }
    quota.div_ceil(live.max(1)).max(1)
}

/// How many ingest nodes are alive, as this node last learned it (1 until
/// it learns otherwise). Shared by the heartbeat task and the pipeline.
#[derive(Debug)]
pub struct LiveNodes(AtomicU32);

impl Default for LiveNodes {
    fn default() -> Self {
        Self(AtomicU32::new(1))
    }
}

impl LiveNodes {
    /// The last count, at least 1.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed).max(1)
    }

    /// Records a new count; returns the previous one.
    pub fn set(&self, live: u32) -> u32 {
        self.0.swap(live.max(1), Ordering::Relaxed)
    }
}

/// Where heartbeats go: the recorder's Query service ([`QueryHeartbeat`]),
/// or a test's stand-in.
pub trait NodeHeartbeat: Send + Sync + 'static {
    /// Says `node` is alive for `ttl_ms`; answers the live ingest nodes.
    fn heartbeat<'a>(&'a self, node: &'a str, ttl_ms: u64) -> KeysFuture<'a, u32>;
}

/// Heartbeats to the Query service's `IngestHeartbeat`.
pub struct QueryHeartbeat {
    client: QueryClient<InterceptedService<Channel, Bearer>>,
}

impl QueryHeartbeat {
    /// The heartbeat of `config`: `Some` when `quota.shared` and
    /// `idempotency.query_addr` is set (sending `idempotency.token_file`).
    /// Connects lazily.
    pub fn from_config(
        config: &IngestConfig,
    ) -> Result<Option<Arc<dyn NodeHeartbeat>>, IngestError> {
        let addr = config.idempotency.query_addr.trim();
        if addr.is_empty() || !config.quota.shared {
            return Ok(None);
        }
        let bearer = crate::suppression::query_bearer(
            "idempotency.token_file",
            config.idempotency.token_file.as_deref(),
        )?;
        let timeout = config.idempotency.timeout.into();
        let channel = crate::suppression::query_channel(
            "idempotency.query_addr",
            addr,
            timeout,
            &config.tls,
        )?;
        Ok(Some(Arc::new(Self {
            client: QueryClient::with_interceptor(channel, bearer),
        })))
    }
}

impl NodeHeartbeat for QueryHeartbeat {
    fn heartbeat<'a>(&'a self, node: &'a str, ttl_ms: u64) -> KeysFuture<'a, u32> {
        Box::pin(async move {
            let request = IngestHeartbeatRequest {
                node: node.to_owned(),
                ttl_ms,
            };
            let reply = self.client.clone().ingest_heartbeat(request).await;
            Ok(reply
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner()
                .live_nodes)
        })
    }
}

/// Heartbeats of this node: who it is, where they go and how often.
pub(crate) struct Heartbeats {
    pub(crate) beat: Arc<dyn NodeHeartbeat>,
    pub(crate) node: String,
    pub(crate) interval: Duration,
    pub(crate) ttl_ms: u64,
    pub(crate) via: String,
}

impl Heartbeats {
    pub(crate) fn new(beat: Arc<dyn NodeHeartbeat>, config: &IngestConfig) -> Self {
        Self {
            beat,
            node: format!("ingest-{}", ulid::Ulid::new()),
            interval: config.quota.heartbeat_interval.into(),
            ttl_ms: config.quota.node_ttl.0,
            via: format!(
                "the Query service at idempotency.query_addr {}",
                config.idempotency.query_addr.trim()
            ),
        }
    }

    /// One heartbeat: updates `live` and logs changes; false when Query did
    /// not answer (`failing` says whether the previous one failed too, so
    /// an outage is logged once).
    pub(crate) async fn once(&self, live: &LiveNodes, failing: bool) -> bool {
        match self.beat.heartbeat(&self.node, self.ttl_ms).await {
            Ok(count) => {
                let before = live.set(count);
                if failing {
                    tracing::info!(live_nodes = count, via = %self.via, "ingest heartbeats answered again");
                }
                if before != count.max(1) {
                    tracing::info!(
                        before,
                        live_nodes = count.max(1),
                        "live ingest nodes changed; every tenant's quota on this node is now rate_quota / {}",
                        count.max(1)
                    );
                }
                true
            }
            Err(reason) => {
                if !failing {
                    tracing::warn!(
                        via = %self.via,
                        %reason,
                        live_nodes = live.get(),
                        "cannot send the ingest heartbeat; keeping the last count of live ingest nodes for tenant quotas. Check that the recorder runs at idempotency.query_addr and that idempotency.token_file holds a Query token with role node"
                    );
                }
                false
            }
        }
    }

    /// Heartbeats every `interval` until `shutdown`.
    pub(crate) async fn run(
        self,
        live: Arc<LiveNodes>,
        mut failing: bool,
        shutdown: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            failing = !self.once(&live, failing).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_the_quota_over_live_nodes_rounded_up() {
        assert_eq!(share(20, 1), 20);
        assert_eq!(share(20, 2), 10);
        assert_eq!(share(20, 3), 7, "rounded up");
        assert_eq!(share(3, 10), 1, "at least one");
        assert_eq!(share(0, 4), 0, "unlimited stays unlimited");
        assert_eq!(share(20, 0), 20, "no count is one node");
        assert_eq!(share(u32::MAX, 1), u32::MAX);
    }

    #[test]
    fn the_sum_of_shares_exceeds_the_quota_by_less_than_one_per_node() {
        for quota in 1..200u32 {
            for live in 1..20u32 {
                let sum = u64::from(share(quota, live)) * u64::from(live);
                assert!(sum >= u64::from(quota), "{quota}/{live}");
                let slack = u64::from(quota.max(live)) + u64::from(live) - 1;
                assert!(sum <= slack, "{quota}/{live}: {sum}");
            }
        }
    }

    /// Answers the counts it is given in turn; `None` is an outage.
    struct Scripted(std::sync::Mutex<Vec<Option<u32>>>);

    impl NodeHeartbeat for Scripted {
        fn heartbeat<'a>(&'a self, _node: &'a str, _ttl_ms: u64) -> KeysFuture<'a, u32> {
            let next = self.0.lock().expect("script").remove(0);
            Box::pin(async move { next.ok_or_else(|| "Unavailable: connection refused".into()) })
        }
    }

    #[tokio::test]
    async fn an_unreachable_query_keeps_the_last_count() {
        let script = Scripted(std::sync::Mutex::new(vec![Some(3), None, None, Some(2)]));
        let beats = Heartbeats {
            beat: Arc::new(script),
            node: "ingest-test".into(),
            interval: Duration::from_secs(1),
            ttl_ms: 5_000,
            via: "the test".into(),
        };
        let live = LiveNodes::default();
        assert!(beats.once(&live, false).await);
        assert_eq!(live.get(), 3);
        assert!(!beats.once(&live, false).await, "outage");
        assert!(!beats.once(&live, true).await, "still out");
        assert_eq!(live.get(), 3, "the last count is kept");
        assert!(beats.once(&live, true).await, "answered again");
        assert_eq!(live.get(), 2);
    }

    #[test]
    fn live_nodes_start_at_one_and_never_drop_below() {
        let live = LiveNodes::default();
        assert_eq!(live.get(), 1);
        assert_eq!(live.set(3), 1);
        assert_eq!(live.get(), 3);
        live.set(0);
        assert_eq!(live.get(), 1);
    }
}
