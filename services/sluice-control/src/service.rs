//! The `sluice.v1.Control` gRPC service over a [`ConfigStore`], and `run`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use futures::Stream;
use sluice_node::CancellationToken;
use sluice_proto::v1::control_server::{Control, ControlServer};
use sluice_proto::v1::*;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::auth::{Auth, Need};
use crate::config::Role;
use crate::record::{Kind, Record};
use crate::store::ConfigStore;
use crate::{ControlBackends, ControlConfig, ControlError, ControlListeners, validate};

#[path = "service_webhooks.rs"]
mod webhooks;

/// Suppressions per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Most suppressions one page may hold.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Most referring records a FAILED_PRECONDITION answer names.
const MAX_NAMED_REFERENCES: usize = 10;

/// The Control service. Writes are announced to watchers through `head`.
pub struct ControlService {
    store: Arc<dyn ConfigStore>,
    head: watch::Sender<u64>,
    stop: CancellationToken,
    auth: Auth,
    /// One permit per open Watch stream (`max_watchers`).
    watchers: Arc<tokio::sync::Semaphore>,
    max_watchers: usize,
    metrics: Arc<crate::metrics::ControlMetrics>,
    /// Serializes the webhook calls' read-modify-write of a tenant on this
    /// replica (of several posts giving up at once, one disables).
    webhook_changes: tokio::sync::Mutex<()>,
}

impl ControlService {
    /// A service over `store` that admits the callers `config.credentials`
    /// names (or everyone, with `allow_unauthenticated` and no credentials);
    /// watch streams end when `stop` is cancelled.
    pub async fn new(
        store: Arc<dyn ConfigStore>,
        config: &ControlConfig,
        stop: CancellationToken,
    ) -> Result<Self, ControlError> {
        let auth = Auth::from_config(config)?;
        let (head, _) = watch::channel(store.revision().await?);
        Ok(Self {
            store,
            head,
            stop,
            auth,
            watchers: Arc::new(tokio::sync::Semaphore::new(config.max_watchers)),
            max_watchers: config.max_watchers,
            metrics: Arc::default(),
            webhook_changes: tokio::sync::Mutex::new(()),
        })
    }

    /// Counts the service's work in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::ControlMetrics>) -> Self {
        let revision = *self.head.borrow();
        metrics
            .revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
        self.metrics = metrics;
        self
    }

    /// Tells watchers (and the metrics) about a change written at `revision`.
    fn announce(&self, revision: u64) {
        self.metrics.wrote(revision);
        self.head.send_replace(revision);
    }

    /// Fails unless an operator's put changes only `paused` of an existing
    /// record (`stored`); admins pass. The same answer whether the record
    /// exists or not.
    fn pause_only<T: PartialEq>(
        role: Role,
        stored: Option<T>,
        unpaused: impl Fn(T) -> T,
        wanted: &T,
    ) -> Result<(), ControlError> {
        if role == Role::Admin {
            return Ok(());
        }
        match stored.map(unpaused) {
            Some(same) if same == *wanted => Ok(()),
            _ => Err(ControlError::PermissionDenied(
                "this change needs the admin role; an operator token may only change `paused` \
                 of an existing IP or tenant"
                    .into(),
            )),
        }
    }

    /// The IPs with their leases filled in (when the store sees leases).
    async fn with_leases(&self, mut ips: Vec<SourceIp>) -> Result<Vec<SourceIp>, ControlError> {
        let leases = self.store.leases().await?;
        for ip in &mut ips {
            ip.lease = leases.get(&ip.address).cloned();
        }
        Ok(ips)
    }

    /// Fails with FAILED_PRECONDITION when other records still name the
    /// pool or warm-up plan `name`.
    async fn unreferenced(&self, kind: Kind, name: &str) -> Result<(), ControlError> {
        let mut refs = Vec::new();
        if matches!(kind, Kind::Pool | Kind::WarmupPlan) {
            for r in self.store.list(Kind::Ip).await? {
                if let Record::Ip(ip) = r {
                    if kind == Kind::Pool && ip.pool == name {
                        refs.push(format!("ip {} (pool)", ip.address));
                    } else if kind == Kind::WarmupPlan && ip.warmup_plan == name {
                        refs.push(format!("ip {} (warmup_plan)", ip.address));
                    }
                }
            }
        }
        if kind == Kind::Pool {
            for r in self.store.list(Kind::Tenant).await? {
                if let Record::Tenant(t) = r
                    && t.default_pool == name
                {
                    refs.push(format!("tenant {} (default_pool)", t.name));
                }
            }
        }
        if refs.is_empty() {
            return Ok(());
        }
        let total = refs.len();
        refs.truncate(MAX_NAMED_REFERENCES);
        let more = match total - refs.len() {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        let what = kind.as_str().replace('_', "-");
        Err(ControlError::FailedPrecondition(format!(
            "{what} `{name}` is still used by {}{more}; change or delete those first",
            refs.join(", ")
        )))
    }

    /// Everything but suppressions, at the revision read first.
    async fn snapshot(&self) -> Result<ConfigSnapshot, ControlError> {
        // The revision first: every change up to it is in the lists below.
        // A change committed while they are read may show too; a watcher
        // from `revision` then sees it again, which is harmless because a
        // change carries the whole record (docs/control.md).
        let revision = self.store.revision().await?;
        let mut snap = ConfigSnapshot {
            revision,
            ..Default::default()
        };
        for kind in Kind::ALL {
            for record in self.store.list(kind).await? {
                match record {
                    Record::Pool(p) => snap.pools.push(p),
                    Record::Ip(ip) => snap.ips.push(ip),
                    Record::WarmupPlan(p) => snap.warmup_plans.push(p),
                    Record::SitePolicy(s) => snap.site_policies.push(s),
                    Record::Tenant(t) => snap.tenants.push(t),
                    Record::Provider(p) => snap.providers.push(p),
                }
            }
        }
        snap.ips = self.with_leases(std::mem::take(&mut snap.ips)).await?;
        Ok(snap)
    }

    async fn require(&self, kind: Kind, field: &str, name: &str) -> Result<(), ControlError> {
        if self.store.get(kind, name).await?.is_none() {
            let what = kind.as_str().replace('_', "-");
            return Err(ControlError::invalid(
                field,
                format!("{what} `{name}` does not exist; create it first"),
            ));
        }
        Ok(())
    }

    async fn put(&self, record: Record) -> Result<(), ControlError> {
        let revision = self.store.put(record).await?;
        self.announce(revision);
        Ok(())
    }
}

/// Runs the Control service on `listeners.grpc` over `backends.store`
/// until `shutdown` is cancelled; open Watch streams end then, and calls in
/// flight get `config.drain_timeout` to finish.
pub async fn run(
    listeners: ControlListeners,
    config: ControlConfig,
    backends: ControlBackends,
    shutdown: CancellationToken,
) -> Result<(), ControlError> {
    let gate = sluice_node::gate::Gate::new(config.max_connections, config.max_connections_per_ip);
    let unauthenticated = config.credentials.is_empty();
    let incoming = sluice_node::listen::open_for(
        listeners.grpc,
        "listen",
        &config.tls,
        gate,
        sluice_node::listen::GRPC,
        unauthenticated,
    )
    .map_err(|err| ControlError::Config(err.0))?;
    let ready = store_answers(backends.store.clone());
    let service = ControlService::new(backends.store, &config, shutdown.clone())
        .await?
        .with_metrics(backends.metrics.clone());
    let exposition = serve_metrics(
        listeners.metrics,
        &config,
        &backends.metrics,
        ready,
        &shutdown,
    )?;
    tracing::info!(addr = %incoming.local_addr(), tls = config.tls.cert_file.is_some(), "control serving");
    let stop = shutdown.clone();
    let health = sluice_node::health::service(&["sluice.v1.Control"], shutdown.clone()).await;
    let reflection = sluice_node::health::reflection(&[sluice_proto::FILE_DESCRIPTOR_SET]);
    let shed = sluice_node::shed::Shed::new(config.max_requests, sluice_node::shed::Protocol::Grpc)
        .counting(backends.metrics.shed.clone());
    let deadline =
        sluice_node::deadline::BodyDeadline::new(sluice_node::deadline::BODY_TIMEOUT, &[]);
    let server = tonic::transport::Server::builder()
        .layer(shed)
        .layer(deadline)
        .add_service(health)
        .add_service(reflection)
        .add_service(ControlServer::new(service))
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned());
    let drain = config.drain_timeout.into();
    sluice_node::drain_within("control", &shutdown, drain, async {
        let (served, exposed) = tokio::join!(server, exposition);
        served.map_err(ControlError::from)?;
        exposed.map_err(ControlError::Listen)
    })
    .await
}

/// Serves control's metrics on `listener` (when bound) until `shutdown`.
fn serve_metrics(
    listener: Option<tokio::net::TcpListener>,
    config: &ControlConfig,
    metrics: &Arc<crate::metrics::ControlMetrics>,
    ready: sluice_node::probes::Check,
    shutdown: &CancellationToken,
) -> Result<impl std::future::Future<Output = std::io::Result<()>> + use<>, ControlError> {
    let metrics = metrics.clone();
    let render: sluice_node::metrics::Render = Arc::new(move || metrics.render());
    let (section, tls) = (&config.metrics, &config.tls);
    sluice_node::metrics::serve_optional(listener, section, tls, render, ready, shutdown)
        .map_err(|(field, reason)| ControlError::Config(format!("{field}: {reason}")))
}

/// Ready while the store tells its revision within 2 s.
fn store_answers(store: Arc<dyn ConfigStore>) -> sluice_node::probes::Check {
    Arc::new(move || {
        let store = store.clone();
        Box::pin(async move {
            let read = store.revision();
            match tokio::time::timeout(std::time::Duration::from_secs(2), read).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(format!("the configuration store does not answer: {err}")),
                Err(_) => Err("the configuration store did not answer within 2 s".into()),
            }
        })
    })
}

fn page_token(address: &str) -> String {
    address.bytes().map(|b| format!("{b:02x}")).collect()
}

fn parse_page_token(token: &str) -> Result<String, ControlError> {
    let bad = || ControlError::invalid("page_token", "is not a token this service issued");
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}

fn records<T>(list: Vec<Record>, pick: impl Fn(Record) -> Option<T>) -> Vec<T> {
    list.into_iter().filter_map(pick).collect()
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<ConfigChange, Status>> + Send>>;

#[tonic::async_trait]
impl Control for ControlService {
    async fn list_providers(
        &self,
        request: Request<ListProvidersRequest>,
    ) -> Result<Response<ListProvidersResponse>, Status> {
        self.auth.authorize(&request, Need::Read)?;
        let list = self.store.list(Kind::Provider).await?;
        let providers = records(list, |r| match r {
            Record::Provider(p) => Some(p),
            _ => None,
        });
        Ok(Response::new(ListProvidersResponse { providers }))
    }

    async fn put_provider(&self, request: Request<Provider>) -> Result<Response<Provider>, Status> {
        self.auth.authorize(&request, Need::Admin)?;
        let provider = request.into_inner();
        validate::provider(&provider)?;
        self.put(Record::Provider(provider.clone())).await?;
        Ok(Response::new(provider))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        self.auth.authorize(&request, Need::Admin)?;
        let req = request.into_inner();
        let kind = RecordKind::try_from(req.kind)
            .ok()
            .and_then(Kind::from_proto)
            .ok_or_else(|| {
                ControlError::invalid(
                    "kind",
                    "must be one of pool, ip, warmup plan, site policy, tenant, provider",
                )
            })?;
        let name = match kind {
            Kind::Ip => validate::ip_address("name", &req.name)?,
            _ => {
                validate::name("name", &req.name)?;
                req.name
            }
        };
        self.unreferenced(kind, &name).await?;
        let deleted = self.store.delete(kind, &name).await?;
        if let Some(revision) = deleted {
            self.announce(revision);
        }
        Ok(Response::new(DeleteResponse {
            deleted: deleted.is_some(),
        }))
    }

    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<ConfigSnapshot>, Status> {
        self.auth.authorize(&request, Need::Read)?;
        Ok(Response::new(self.snapshot().await?))
    }

    async fn list_pools(
        &self,
        request: Request<ListPoolsRequest>,
    ) -> Result<Response<ListPoolsResponse>, Status> {
        self.auth.authorize(&request, Need::Read)?;
        let list = self.store.list(Kind::Pool).await?;
        let pools = records(list, |r| match r {
            Record::Pool(p) => Some(p),
            _ => None,
        });
        Ok(Response::new(ListPoolsResponse { pools }))
    }

    async fn put_pool(&self, request: Request<Pool>) -> Result<Response<Pool>, Status> {
        self.auth.authorize(&request, Need::Admin)?;
        let pool = request.into_inner();
        validate::pool(&pool)?;
        self.put(Record::Pool(pool.clone())).await?;
        Ok(Response::new(pool))
    }

    async fn list_ips(
        &self,
        request: Request<ListIpsRequest>,
    ) -> Result<Response<ListIpsResponse>, Status> {
        self.auth.authorize(&request, Need::Read)?;
        let pool = request.into_inner().pool;
        let list = self.store.list(Kind::Ip).await?;
        let ips = records(list, |r| match r {
            Record::Ip(ip) if pool.is_empty() || ip.pool == pool => Some(ip),
            _ => None,
        });
        let ips = self.with_leases(ips).await?;
        Ok(Response::new(ListIpsResponse { ips }))
    }

    async fn put_ip(&self, request: Request<SourceIp>) -> Result<Response<SourceIp>, Status> {
        let role = self.auth.authorize(&request, Need::Pause)?;
        let ip = validate::source_ip(&request.into_inner())?;
        if role != Role::Admin {
            let stored = match self.store.get(Kind::Ip, &ip.address).await? {
                Some(Record::Ip(old)) => Some(old),
                _ => None,
            };
            let unpaused = |old: SourceIp| SourceIp {
                paused: ip.paused,
                lease: None,
                ..old
            };
            Self::pause_only(role, stored, unpaused, &ip)?;
        }
        self.require(Kind::Pool, "pool", &ip.pool).await?;
        if !ip.warmup_plan.is_empty() {
            self.require(Kind::WarmupPlan, "warmup_plan", &ip.warmup_plan)
                .await?;
        }
        self.put(Record::Ip(ip.clone())).await?;
        Ok(Response::new(ip))
    }

    async fn list_warmup_plans(
        &self,
        request: Request<ListWarmupPlansRequest>,
    ) -> Result<Response<ListWarmupPlansResponse>, Status> {
        self.auth.authorize(&request, Need::Read)?;
        let list = self.store.list(Kind::WarmupPlan).await?;
        let plans = records(list, |r| match r {
            Record::WarmupPlan(p) => Some(p),
            _ => None,
        });
        Ok(Response::new(ListWarmupPlansResponse { plans }))
    }

    async fn put_warmup_plan(
        &self,
        request: Request<WarmupPlan>,
    ) -> Result<Response<WarmupPlan>, Status> {
        self.auth.authorize(&request, Need::Admin)?;
        let plan = request.into_inner();
        validate::warmup_plan(&plan)?;
        self.put(Record::WarmupPlan(plan.clone())).await?;
        Ok(Response::new(plan))
    }

    async fn list_site_policies(
        &self,
        request: Request<ListSitePoliciesRequest>,
    ) -> Result<Response<ListSitePoliciesResponse>, Status> {
        self.auth.authorize(&request, Need::Read)?;
        let list = self.store.list(Kind::SitePolicy).await?;
        let policies = records(list, |r| match r {
            Record::SitePolicy(s) => Some(s),
            _ => None,
        });
        Ok(Response::new(ListSitePoliciesResponse { policies }))
    }

    async fn put_site_policy(
        &self,
        request: Request<SitePolicy>,
    ) -> Result<Response<SitePolicy>, Status> {
        self.auth.authorize(&request, Need::Admin)?;
        let mut policy = request.into_inner();
        validate::site_policy(&policy)?;
        let stored = match self.store.get(Kind::SitePolicy, &policy.site).await? {
            Some(Record::SitePolicy(old)) => Some(old),
            _ => None,
        };
        policy.changed_at = changed_at(stored.as_ref(), &policy);
        self.put(Record::SitePolicy(policy.clone())).await?;
        Ok(Response::new(policy))
    }

    async fn list_tenants(
        &self,
        request: Request<ListTenantsRequest>,
    ) -> Result<Response<ListTenantsResponse>, Status> {
        self.auth.authorize(&request, Need::Read)?;
        let list = self.store.list(Kind::Tenant).await?;
        let tenants = records(list, |r| match r {
            Record::Tenant(t) => Some(t),
            _ => None,
        });
        Ok(Response::new(ListTenantsResponse { tenants }))
    }

    async fn put_tenant(&self, request: Request<Tenant>) -> Result<Response<Tenant>, Status> {
        let role = self.auth.authorize(&request, Need::Pause)?;
        let tenant = validate::tenant(&request.into_inner())?;
        if role != Role::Admin {
            let stored = match self.store.get(Kind::Tenant, &tenant.name).await? {
                Some(Record::Tenant(old)) => Some(old),
                _ => None,
            };
            let unpaused = |old: Tenant| Tenant {
                paused: tenant.paused,
                ..old
            };
            Self::pause_only(role, stored, unpaused, &tenant)?;
        }
        if !tenant.default_pool.is_empty() {
            self.require(Kind::Pool, "default_pool", &tenant.default_pool)
                .await?;
        }
        self.put(Record::Tenant(tenant.clone())).await?;
        Ok(Response::new(tenant))
    }

    async fn disable_webhook(
        &self,
        request: Request<DisableWebhookRequest>,
    ) -> Result<Response<Tenant>, Status> {
        self.auth.authorize(&request, Need::Webhook)?;
        Ok(Response::new(self.disable(request.into_inner()).await?))
    }

    async fn put_webhook(
        &self,
        request: Request<PutWebhookRequest>,
    ) -> Result<Response<Tenant>, Status> {
        self.auth.authorize(&request, Need::Webhook)?;
        Ok(Response::new(self.put_one(request.into_inner()).await?))
    }

    async fn delete_webhook(
        &self,
        request: Request<DeleteWebhookRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        self.auth.authorize(&request, Need::Webhook)?;
        let deleted = self.delete_one(request.into_inner()).await?;
        Ok(Response::new(DeleteResponse { deleted }))
    }

    async fn add_suppression(
        &self,
        request: Request<Suppression>,
    ) -> Result<Response<Suppression>, Status> {
        self.auth.authorize(&request, Need::Suppress)?;
        let mut s = validate::suppression(&request.into_inner())?;
        if s.created_at.is_none() {
            s.created_at = Some(prost_types::Timestamp::from(SystemTime::now()));
        }
        let revision = self.store.add_suppression(s.clone()).await?;
        self.announce(revision);
        Ok(Response::new(s))
    }

    async fn remove_suppression(
        &self,
        request: Request<RemoveSuppressionRequest>,
    ) -> Result<Response<RemoveSuppressionResponse>, Status> {
        self.auth.authorize(&request, Need::Suppress)?;
        let req = request.into_inner();
        validate::name("tenant", &req.tenant)?;
        let address = validate::email("address", &req.address)?;
        let removed = self.store.remove_suppression(&req.tenant, &address).await?;
        if let Some(revision) = removed {
            self.announce(revision);
        }
        Ok(Response::new(RemoveSuppressionResponse {
            removed: removed.is_some(),
        }))
    }

    async fn list_suppressions(
        &self,
        request: Request<ListSuppressionsRequest>,
    ) -> Result<Response<ListSuppressionsResponse>, Status> {
        self.auth.authorize(&request, Need::Read)?;
        let req = request.into_inner();
        validate::name("tenant", &req.tenant)?;
        let after = parse_page_token(&req.page_token)?;
        let size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        } as usize;
        let suppressions = self
            .store
            .list_suppressions(&req.tenant, &after, size)
            .await?;
        let next_page_token = match suppressions.last() {
            Some(last) if suppressions.len() == size => page_token(&last.address),
            _ => String::new(),
        };
        Ok(Response::new(ListSuppressionsResponse {
            suppressions,
            next_page_token,
        }))
    }

    async fn import_suppressions(
        &self,
        request: Request<ImportSuppressionsRequest>,
    ) -> Result<Response<ImportSuppressionsResponse>, Status> {
        self.auth.authorize(&request, Need::Suppress)?;
        let entries = validate::import(&request.into_inner(), SystemTime::now())?;
        let imported = entries.len();
        self.store.import_suppressions(entries).await?;
        Ok(Response::new(ImportSuppressionsResponse {
            imported: imported as u32,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.auth.authorize(&request, Need::Read)?;
        let permit = self.watchers.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this control process serves {} watch streams already (max_watchers); retry later or watch another replica",
                self.max_watchers
            ))
        })?;
        let req = request.into_inner();
        tracing::debug!(node = %req.node, after = req.after_revision, "watch started");
        let stream = crate::watch::changes(
            self.store.clone(),
            req.after_revision,
            self.head.subscribe(),
            self.stop.clone(),
        );
        // The permit (and the count of open streams) lives as long as the
        // stream.
        let watching = crate::metrics::Watching::new(&self.metrics.watchers);
        let stream = futures::StreamExt::map(stream, move |item| {
            let _held = (&permit, &watching);
            item
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// `policy`'s `changed_at`: now, unless it sets what `stored` set.
fn changed_at(stored: Option<&SitePolicy>, policy: &SitePolicy) -> Option<prost_types::Timestamp> {
    let limits = |p: &SitePolicy| SitePolicy {
        changed_at: None,
        ..p.clone()
    };
    match stored {
        Some(old) if limits(old) == limits(policy) => old.changed_at,
        _ => Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_junk() {
        let t = page_token("bob@example.com");
        assert_eq!(parse_page_token(&t).unwrap(), "bob@example.com");
        assert_eq!(parse_page_token("").unwrap(), "");
        assert!(parse_page_token("zz").is_err());
        assert!(parse_page_token("abc").is_err());
    }
}
