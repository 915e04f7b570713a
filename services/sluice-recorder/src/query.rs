//! The `sluice.v1.Query` gRPC service: message status, stats, reputation,
//! suppressions. Every call is authenticated first ([`Authenticate`], before
//! the body is decoded) and checked against the caller's role and tenant
//! before the ledger is read (see `auth` and docs/recorder.md).

use std::sync::Arc;

use sluice_proto::v1::query_server::Query;
use sluice_proto::v1::query_server::QueryServer;
use sluice_proto::v1::{
    CheckSuppressionsRequest, CheckSuppressionsResponse, ClaimIdempotencyKeyRequest,
    ClaimIdempotencyKeyResponse, GetMessageRequest, GetReputationRequest, GetReputationResponse,
    GetStatsRequest, GetStatsResponse, IngestHeartbeatRequest, IngestHeartbeatResponse,
    ListWebhookDeliveriesRequest, ListWebhookDeliveriesResponse, MessageStatus,
    SettleIdempotencyKeyRequest, SettleIdempotencyKeyResponse, StatsDimension, StatsRow,
};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::RecorderError;
use crate::auth::{Call, Caller, QueryAuth};
use crate::ledger::{AnyLedger, Ledger};
use crate::record::Deltas;
use crate::time::{days_between, parse_day};

/// Longest day range one stats call may cover.
const MAX_STATS_DAYS: i64 = 366;
/// Most addresses one `CheckSuppressions` call may ask about.
pub const MAX_SUPPRESSION_ADDRESSES: usize = 1_000;

/// Query service over the recorder's tables, on either ledger back end.
pub struct QueryService {
    ledger: Arc<AnyLedger>,
    auth: Arc<QueryAuth>,
}

/// Authenticates every call from its metadata before the body is decoded:
/// an unknown caller gets `UNAUTHENTICATED` at once; a known one is put in
/// the request's extensions for the service.
#[derive(Clone)]
pub struct Authenticate(Arc<QueryAuth>);

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.0.caller(request.metadata())?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

impl QueryService {
    /// Serves Query from `ledger` (e.g. `Arc::new(embedded.into())`) to the
    /// callers `auth` admits.
    pub fn new(ledger: Arc<AnyLedger>, auth: Arc<QueryAuth>) -> Self {
        Self { ledger, auth }
    }

    /// The gRPC service: this service behind [`Authenticate`].
    pub fn server(
        ledger: Arc<AnyLedger>,
        auth: Arc<QueryAuth>,
    ) -> InterceptedService<QueryServer<Self>, Authenticate> {
        let check = Authenticate(auth.clone());
        QueryServer::with_interceptor(Self::new(ledger, auth), check)
    }

    /// The caller [`Authenticate`] found, or (when the service is served
    /// without it) the caller of the request's metadata; then whether it
    /// may make `call`.
    fn caller<T>(&self, request: &Request<T>, call: Call) -> Result<Caller, RecorderError> {
        let caller = match request.extensions().get::<Caller>() {
            Some(caller) => caller.clone(),
            None => self.auth.caller(request.metadata())?,
        };
        caller.may(call)?;
        Ok(caller)
    }
}

/// True when `caller` may see the message whose events are `history`: staff
/// always; a tenant when the events are its own.
fn visible(caller: &Caller, history: &[sluice_proto::v1::Event]) -> bool {
    match caller {
        Caller::Staff(_) => true,
        Caller::Tenant(own) => {
            history.iter().any(|e| e.tenant == *own)
                && history
                    .iter()
                    .all(|e| e.tenant.is_empty() || e.tenant == *own)
        }
    }
}

/// The counter key `req` reads, when `caller` may read it: a tenant reads
/// its own tenant row and its own campaigns (by the campaign's name; IP and
/// site counters are shared by every tenant); staff read any key, a
/// campaign as `<tenant>/<campaign>`.
fn stats_key(caller: &Caller, req: &GetStatsRequest) -> Result<String, RecorderError> {
    match (caller, req.dimension()) {
        (Caller::Tenant(own), StatsDimension::Campaign) => {
            Ok(crate::record::campaign_key(own, &req.key))
        }
        (Caller::Tenant(_), StatsDimension::Tenant) | (Caller::Staff(_), _) => {
            caller.may_see(&req.key)?;
            Ok(req.key.clone())
        }
        (Caller::Tenant(_), _) => Err(RecorderError::PermissionDenied(
            "a tenant's API key reads stats by tenant (--by tenant --key <its tenant>) or by \
             its own campaign (--by campaign --key <campaign>); IP and site counters are \
             shared by every tenant"
                .into(),
        )),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> RecorderError {
    RecorderError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

fn scope(dimension: StatsDimension) -> Result<&'static str, RecorderError> {
    match dimension {
        StatsDimension::Campaign => Ok("campaign"),
        StatsDimension::Tenant => Ok("tenant"),
        StatsDimension::SourceIp => Ok("ip"),
        StatsDimension::Site => Ok("site"),
        StatsDimension::Unspecified => Err(invalid(
            "dimension",
            "choose campaign, tenant, source IP or site",
        )),
    }
}

/// Checks a stats request and returns its scope and days.
fn stats_plan(req: &GetStatsRequest) -> Result<(&'static str, Vec<String>), RecorderError> {
    let scope = scope(req.dimension())?;
    if req.key.is_empty() {
        return Err(invalid("key", "must not be empty"));
    }
    let from =
        parse_day(&req.from_day).ok_or_else(|| invalid("from_day", "expected YYYY-MM-DD"))?;
    let to = parse_day(&req.to_day).ok_or_else(|| invalid("to_day", "expected YYYY-MM-DD"))?;
    if to < from {
        return Err(invalid("to_day", "is before from_day"));
    }
    if to - from >= MAX_STATS_DAYS {
        return Err(invalid(
            "to_day",
            format!("range is longer than {MAX_STATS_DAYS} days"),
        ));
    }
    Ok((scope, days_between(from, to)))
}

/// Checks a suppression request field by field.
fn check_suppressions_request(req: &CheckSuppressionsRequest) -> Result<(), RecorderError> {
    if req.tenant.is_empty() {
        return Err(invalid("tenant", "must not be empty"));
    }
    if req.addresses.len() > MAX_SUPPRESSION_ADDRESSES {
        return Err(invalid(
            "addresses",
            format!(
                "{} addresses, at most {MAX_SUPPRESSION_ADDRESSES} per call; split the request",
                req.addresses.len()
            ),
        ));
    }
    if let Some(i) = req.addresses.iter().position(String::is_empty) {
        return Err(invalid(
            "addresses",
            format!("address {i} is empty; send only non-empty addresses"),
        ));
    }
    Ok(())
}

fn stats_row(day: String, key: &str, d: &Deltas) -> StatsRow {
    let get = |c| u64::try_from(d.get(c)).unwrap_or(0);
    StatsRow {
        day,
        key: key.to_owned(),
        accepted: get("accepted"),
        delivered: get("delivered"),
        deferred: get("deferred"),
        bounced: get("bounced"),
        expired: get("expired"),
        suppressed: get("suppressed"),
        complained: get("complained"),
        opened: get("opened"),
        clicked: get("clicked"),
    }
}

#[tonic::async_trait]
impl Query for QueryService {
    async fn get_message(
        &self,
        request: Request<GetMessageRequest>,
    ) -> Result<Response<MessageStatus>, Status> {
        let caller = self.caller(&request, Call::GetMessage)?;
        let id = request.into_inner().message_id;
        if id.is_empty() {
            return Err(invalid("message_id", "must not be empty").into());
        }
        let history = self.ledger.history(&id).await?;
        // Another tenant's message gets the answer of an unknown one.
        let last = history
            .last()
            .filter(|_| visible(&caller, &history))
            .ok_or_else(|| RecorderError::NotFound(format!("message {id}")))?;
        Ok(Response::new(MessageStatus {
            message_id: id.clone(),
            state: last.kind,
            history,
        }))
    }

    async fn get_stats(
        &self,
        request: Request<GetStatsRequest>,
    ) -> Result<Response<GetStatsResponse>, Status> {
        let caller = self.caller(&request, Call::GetStats)?;
        let req = request.into_inner();
        let key = stats_key(&caller, &req)?;
        let (scope, days) = stats_plan(&req)?;
        let mut rows = Vec::new();
        for day in days {
            let parts = self.ledger.daily(scope, &key, &day).await?;
            if parts.is_empty() {
                continue;
            }
            let total = parts.iter().fold(Deltas::default(), |mut a, (_, d)| {
                a.add(d);
                a
            });
            rows.push(stats_row(day, &req.key, &total));
        }
        Ok(Response::new(GetStatsResponse { rows }))
    }

    async fn get_reputation(
        &self,
        request: Request<GetReputationRequest>,
    ) -> Result<Response<GetReputationResponse>, Status> {
        self.caller(&request, Call::GetReputation)?;
        let req = request.into_inner();
        let rows = self
            .ledger
            .path_reputation(&req.source_ip, &req.site)
            .await?;
        let tenants = if req.source_ip.is_empty() && req.site.is_empty() || !req.tenant.is_empty() {
            self.ledger.tenant_reputation(&req.tenant).await?
        } else {
            Vec::new()
        };
        Ok(Response::new(GetReputationResponse { rows, tenants }))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<ListWebhookDeliveriesRequest>,
    ) -> Result<Response<ListWebhookDeliveriesResponse>, Status> {
        let caller = self.caller(&request, Call::WebhookDeliveries)?;
        let req = request.into_inner();
        if req.tenant.is_empty() {
            return Err(invalid("tenant", "must name the webhook's tenant").into());
        }
        if req.webhook_id.is_empty() {
            return Err(invalid("webhook_id", "must not be empty").into());
        }
        caller.may_see(&req.tenant)?;
        let limit = match req.limit as usize {
            0 => 100,
            n if n > crate::webhook_log::MAX_LIMIT => {
                return Err(invalid("limit", "at most 1000").into());
            }
            n => n,
        };
        let attempts = self
            .ledger
            .webhook_attempts(&req.tenant, &req.webhook_id, limit)
            .await?;
        Ok(Response::new(ListWebhookDeliveriesResponse { attempts }))
    }

    async fn check_suppressions(
        &self,
        request: Request<CheckSuppressionsRequest>,
    ) -> Result<Response<CheckSuppressionsResponse>, Status> {
        let caller = self.caller(&request, Call::CheckSuppressions)?;
        let req = request.into_inner();
        caller.may_see(&req.tenant)?;
        check_suppressions_request(&req)?;
        let suppressed = self.ledger.suppressed(&req.tenant, &req.addresses).await?;
        Ok(Response::new(CheckSuppressionsResponse { suppressed }))
    }

    async fn claim_idempotency_key(
        &self,
        request: Request<ClaimIdempotencyKeyRequest>,
    ) -> Result<Response<ClaimIdempotencyKeyResponse>, Status> {
        self.caller(&request, Call::IdempotencyKeys)?;
        let response = crate::query_keys::claim(&self.ledger, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn settle_idempotency_key(
        &self,
        request: Request<SettleIdempotencyKeyRequest>,
    ) -> Result<Response<SettleIdempotencyKeyResponse>, Status> {
        self.caller(&request, Call::IdempotencyKeys)?;
        let response = crate::query_keys::settle(&self.ledger, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn ingest_heartbeat(
        &self,
        request: Request<IngestHeartbeatRequest>,
    ) -> Result<Response<IngestHeartbeatResponse>, Status> {
        self.caller(&request, Call::IngestHeartbeat)?;
        let response = crate::heartbeats::heartbeat(&self.ledger, request.into_inner()).await?;
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(dimension: StatsDimension, key: &str, from: &str, to: &str) -> GetStatsRequest {
        GetStatsRequest {
            dimension: dimension.into(),
            key: key.into(),
            from_day: from.into(),
            to_day: to.into(),
        }
    }

    #[test]
    fn suppression_requests_are_checked_field_by_field() {
        let req = |tenant: &str, n: usize, address: &str| CheckSuppressionsRequest {
            tenant: tenant.into(),
            addresses: vec![address.to_owned(); n],
        };
        assert!(check_suppressions_request(&req("acme", 1_000, "a@example.com")).is_ok());
        assert!(check_suppressions_request(&req("acme", 0, "")).is_ok());
        let field = |r: &CheckSuppressionsRequest| match check_suppressions_request(r) {
            Err(RecorderError::InvalidArgument { field, .. }) => field,
            other => panic!("expected invalid argument, got {other:?}"),
        };
        assert_eq!(field(&req("", 1, "a@example.com")), "tenant");
        assert_eq!(field(&req("acme", 1_001, "a@example.com")), "addresses");
        assert_eq!(field(&req("acme", 1, "")), "addresses");
    }

    #[test]
    fn stats_requests_are_checked_field_by_field() {
        let (scope, days) = stats_plan(&req(
            StatsDimension::SourceIp,
            "192.0.2.1",
            "2026-01-30",
            "2026-02-01",
        ))
        .expect("valid");
        assert_eq!(scope, "ip");
        assert_eq!(days, ["2026-01-30", "2026-01-31", "2026-02-01"]);
        let field = |r: &GetStatsRequest| match stats_plan(r) {
            Err(RecorderError::InvalidArgument { field, .. }) => field,
            other => panic!("expected invalid argument, got {other:?}"),
        };
        assert_eq!(
            field(&req(
                StatsDimension::Unspecified,
                "k",
                "2026-01-01",
                "2026-01-01"
            )),
            "dimension"
        );
        assert_eq!(
            field(&req(StatsDimension::Tenant, "", "2026-01-01", "2026-01-01")),
            "key"
        );
        assert_eq!(
            field(&req(
                StatsDimension::Tenant,
                "k",
                "01/01/2026",
                "2026-01-01"
            )),
            "from_day"
        );
        assert_eq!(
            field(&req(
                StatsDimension::Tenant,
                "k",
                "2026-01-02",
                "2026-01-01"
            )),
            "to_day"
        );
        assert_eq!(
            field(&req(
                StatsDimension::Tenant,
                "k",
                "2024-01-01",
                "2026-01-01"
            )),
            "to_day"
        );
    }
}
