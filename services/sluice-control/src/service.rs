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

use crate::record::{Kind, Record};
use crate::store::ConfigStore;
use crate::{ControlBackends, ControlConfig, ControlError, ControlListeners, validate};

/// Suppressions per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Most suppressions one page may hold.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The Control service. Writes are announced to watchers through `head`.
pub struct ControlService {
    store: Arc<dyn ConfigStore>,
    head: watch::Sender<u64>,
    stop: CancellationToken,
}

impl ControlService {
    /// A service over `store`; watch streams end when `stop` is cancelled.
    pub async fn new(
        store: Arc<dyn ConfigStore>,
        stop: CancellationToken,
    ) -> Result<Self, ControlError> {
        let (head, _) = watch::channel(store.revision().await?);
        Ok(Self { store, head, stop })
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
        self.head.send_replace(revision);
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
    let service = ControlService::new(backends.store, shutdown.clone()).await?;
    tracing::info!(addr = ?listeners.grpc.local_addr().ok(), "control serving");
    let stop = shutdown.clone();
    let server = tonic::transport::Server::builder()
        .add_service(ControlServer::new(service))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listeners.grpc),
            stop.cancelled_owned(),
        );
    let drain = config.drain_timeout.into();
    sluice_node::drain_within("control", &shutdown, drain, async {
        server.await.map_err(ControlError::from)
    })
    .await
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
        _: Request<sluice_proto::v1::ListProvidersRequest>,
    ) -> Result<Response<sluice_proto::v1::ListProvidersResponse>, Status> {
        Err(Status::unimplemented("providers are being added"))
    }

    async fn put_provider(
        &self,
        _: Request<sluice_proto::v1::Provider>,
    ) -> Result<Response<sluice_proto::v1::Provider>, Status> {
        Err(Status::unimplemented("providers are being added"))
    }

    async fn delete(
        &self,
        _: Request<sluice_proto::v1::DeleteRequest>,
    ) -> Result<Response<sluice_proto::v1::DeleteResponse>, Status> {
        Err(Status::unimplemented("deletes are being added"))
    }

    async fn get_snapshot(
        &self,
        _: Request<sluice_proto::v1::GetSnapshotRequest>,
    ) -> Result<Response<sluice_proto::v1::ConfigSnapshot>, Status> {
        Err(Status::unimplemented("snapshots are being added"))
    }

    async fn list_pools(
        &self,
        _: Request<ListPoolsRequest>,
    ) -> Result<Response<ListPoolsResponse>, Status> {
        let list = self.store.list(Kind::Pool).await?;
        let pools = records(list, |r| match r {
            Record::Pool(p) => Some(p),
            _ => None,
        });
        Ok(Response::new(ListPoolsResponse { pools }))
    }

    async fn put_pool(&self, request: Request<Pool>) -> Result<Response<Pool>, Status> {
        let pool = request.into_inner();
        validate::pool(&pool)?;
        self.put(Record::Pool(pool.clone())).await?;
        Ok(Response::new(pool))
    }

    async fn list_ips(
        &self,
        request: Request<ListIpsRequest>,
    ) -> Result<Response<ListIpsResponse>, Status> {
        let pool = request.into_inner().pool;
        let list = self.store.list(Kind::Ip).await?;
        let ips = records(list, |r| match r {
            Record::Ip(ip) if pool.is_empty() || ip.pool == pool => Some(ip),
            _ => None,
        });
        Ok(Response::new(ListIpsResponse { ips }))
    }

    async fn put_ip(&self, request: Request<SourceIp>) -> Result<Response<SourceIp>, Status> {
        let ip = validate::source_ip(&request.into_inner())?;
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
        _: Request<ListWarmupPlansRequest>,
    ) -> Result<Response<ListWarmupPlansResponse>, Status> {
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
        let plan = request.into_inner();
        validate::warmup_plan(&plan)?;
        self.put(Record::WarmupPlan(plan.clone())).await?;
        Ok(Response::new(plan))
    }

    async fn list_site_policies(
        &self,
        _: Request<ListSitePoliciesRequest>,
    ) -> Result<Response<ListSitePoliciesResponse>, Status> {
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
        let policy = request.into_inner();
        validate::site_policy(&policy)?;
        self.put(Record::SitePolicy(policy.clone())).await?;
        Ok(Response::new(policy))
    }

    async fn list_tenants(
        &self,
        _: Request<ListTenantsRequest>,
    ) -> Result<Response<ListTenantsResponse>, Status> {
        let list = self.store.list(Kind::Tenant).await?;
        let tenants = records(list, |r| match r {
            Record::Tenant(t) => Some(t),
            _ => None,
        });
        Ok(Response::new(ListTenantsResponse { tenants }))
    }

    async fn put_tenant(&self, request: Request<Tenant>) -> Result<Response<Tenant>, Status> {
        let tenant = validate::tenant(&request.into_inner())?;
        if !tenant.default_pool.is_empty() {
            self.require(Kind::Pool, "default_pool", &tenant.default_pool)
                .await?;
        }
        self.put(Record::Tenant(tenant.clone())).await?;
        Ok(Response::new(tenant))
    }

    async fn add_suppression(
        &self,
        request: Request<Suppression>,
    ) -> Result<Response<Suppression>, Status> {
        let mut s = validate::suppression(&request.into_inner())?;
        if s.created_at.is_none() {
            s.created_at = Some(prost_types::Timestamp::from(SystemTime::now()));
        }
        let revision = self.store.add_suppression(s.clone()).await?;
        self.head.send_replace(revision);
        Ok(Response::new(s))
    }

    async fn remove_suppression(
        &self,
        request: Request<RemoveSuppressionRequest>,
    ) -> Result<Response<RemoveSuppressionResponse>, Status> {
        let req = request.into_inner();
        validate::name("tenant", &req.tenant)?;
        let address = validate::email("address", &req.address)?;
        let removed = self.store.remove_suppression(&req.tenant, &address).await?;
        if let Some(revision) = removed {
            self.head.send_replace(revision);
        }
        Ok(Response::new(RemoveSuppressionResponse {
            removed: removed.is_some(),
        }))
    }

    async fn list_suppressions(
        &self,
        request: Request<ListSuppressionsRequest>,
    ) -> Result<Response<ListSuppressionsResponse>, Status> {
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

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let req = request.into_inner();
        tracing::debug!(node = %req.node, after = req.after_revision, "watch started");
        let stream = crate::watch::changes(
            self.store.clone(),
            req.after_revision,
            self.head.subscribe(),
            self.stop.clone(),
        );
        Ok(Response::new(Box::pin(stream)))
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
