//! The suppression API over gRPC: `sluice.v1.TenantSuppressions`, under the
//! same API key as `sluice.v1.Ingest` (docs/ingest.md, "Managing
//! suppressions").

use std::sync::Arc;

use sluice_proto::v1::tenant_suppressions_server::TenantSuppressions;
use sluice_proto::v1::{
    AddSuppressionsRequest, AddSuppressionsResponse, ListTenantSuppressionsRequest,
    ListTenantSuppressionsResponse, RemoveSuppressionsRequest, RemoveSuppressionsResponse,
};
use tonic::{Request, Response, Status};

use crate::grpc::caller;
use crate::pipeline::Ingestor;
use crate::suppression_list::by_index;

/// The service; the interceptor in front of it has found the tenant.
pub(crate) struct SuppressionService {
    pub(crate) ingestor: Arc<Ingestor>,
}

#[tonic::async_trait]
impl TenantSuppressions for SuppressionService {
    async fn list_suppressions(
        &self,
        request: Request<ListTenantSuppressionsRequest>,
    ) -> Result<Response<ListTenantSuppressionsResponse>, Status> {
        let tenant = caller(&request)?;
        let req = request.into_inner();
        let list = self.ingestor.suppression_list();
        let (suppressions, next_page_token) = list
            .list(tenant.name(), &req.page_token, req.page_size)
            .await?;
        Ok(Response::new(ListTenantSuppressionsResponse {
            suppressions,
            next_page_token,
        }))
    }

    async fn add_suppressions(
        &self,
        request: Request<AddSuppressionsRequest>,
    ) -> Result<Response<AddSuppressionsResponse>, Status> {
        let tenant = caller(&request)?;
        let entries = request.into_inner().suppressions;
        let list = self.ingestor.suppression_list();
        let added = list.add(tenant.name(), entries, &by_index).await?;
        Ok(Response::new(AddSuppressionsResponse { added }))
    }

    async fn remove_suppressions(
        &self,
        request: Request<RemoveSuppressionsRequest>,
    ) -> Result<Response<RemoveSuppressionsResponse>, Status> {
        let tenant = caller(&request)?;
        let addresses = request.into_inner().addresses;
        let list = self.ingestor.suppression_list();
        let removed = list.remove(tenant.name(), addresses).await?;
        Ok(Response::new(RemoveSuppressionsResponse { removed }))
    }
}
