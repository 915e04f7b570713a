//! A typed client of the Query service: connects with an error that says
//! how to start a recorder, and turns the CLI's arguments (`--by`, days) into
//! requests. The `sluice` binary renders the answers (`sluice status`,
//! `sluice stats`, `sluice reputation`).

use sluice_control_client::Bearer;
use sluice_proto::v1::query_client::QueryClient as GrpcQueryClient;
use sluice_proto::v1::{
    GetMessageRequest, GetReputationRequest, GetReputationResponse, GetStatsRequest, MessageStatus,
    StatsDimension, StatsRow,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::RecorderError;

/// Default address of the Query service (`query_listen` of the recorder).
pub const DEFAULT_QUERY_ADDR: &str = "http://127.0.0.1:7402";

/// A connection to one recorder's Query service.
#[derive(Debug, Clone)]
pub struct QueryClient {
    grpc: GrpcQueryClient<InterceptedService<Channel, Bearer>>,
}

impl QueryClient {
    /// Connects to the Query service at `addr` (a URL such as
    /// [`DEFAULT_QUERY_ADDR`]), sending `token` (a Query credential's token
    /// or a tenant's API key) as `authorization: Bearer` on every call;
    /// [`RecorderError::QueryUnreachable`] says how to start one when
    /// nothing answers.
    pub async fn connect(addr: &str, token: Option<&str>) -> Result<Self, RecorderError> {
        Self::connect_over(addr, token, &sluice_node::tls::TlsConfig::default()).await
    }

    /// [`QueryClient::connect`] for `https://` addresses too, verified as
    /// `tls` says (and presenting its client certificate, if any).
    pub async fn connect_over(
        addr: &str,
        token: Option<&str>,
        tls: &sluice_node::tls::TlsConfig,
    ) -> Result<Self, RecorderError> {
        let bearer = Bearer::new(token).map_err(|reason| RecorderError::InvalidArgument {
            field: "--token",
            reason,
        })?;
        let endpoint =
            sluice_node::tls::endpoint(addr, tls).map_err(|e| RecorderError::InvalidArgument {
                field: "--query-addr",
                reason: format!("{addr}: {e}"),
            })?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| RecorderError::QueryUnreachable {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            grpc: GrpcQueryClient::with_interceptor(channel, bearer),
        })
    }

    /// The state and history of one message.
    pub async fn message(&mut self, message_id: &str) -> Result<MessageStatus, RecorderError> {
        let request = GetMessageRequest {
            message_id: message_id.to_owned(),
        };
        Ok(self.grpc.get_message(request).await?.into_inner())
    }

    /// One row per day with traffic; `by` is campaign, tenant, ip or site;
    /// days are UTC `YYYY-MM-DD`, both inclusive.
    pub async fn stats(
        &mut self,
        by: &str,
        key: &str,
        (from_day, to_day): (&str, &str),
    ) -> Result<Vec<StatsRow>, RecorderError> {
        let request = GetStatsRequest {
            dimension: parse_dimension(by)?.into(),
            key: key.to_owned(),
            from_day: from_day.to_owned(),
            to_day: to_day.to_owned(),
        };
        Ok(self.grpc.get_stats(request).await?.into_inner().rows)
    }

    /// Path reputation rows (filtered by IP and site when not empty) and
    /// every tenant's reputation.
    pub async fn reputation(
        &mut self,
        ip: &str,
        site: &str,
    ) -> Result<GetReputationResponse, RecorderError> {
        let request = GetReputationRequest {
            source_ip: ip.to_owned(),
            site: site.to_owned(),
            tenant: String::new(),
        };
        Ok(self.grpc.get_reputation(request).await?.into_inner())
    }
}

/// Today in UTC, `YYYY-MM-DD` (the default day range of `sluice stats`).
pub fn today() -> String {
    crate::time::day_of(crate::consumer::now_secs())
}

/// Parses `--by`: campaign, tenant, ip (or source-ip) or site.
pub fn parse_dimension(by: &str) -> Result<StatsDimension, RecorderError> {
    match by {
        "campaign" => Ok(StatsDimension::Campaign),
        "tenant" => Ok(StatsDimension::Tenant),
        "ip" | "source-ip" => Ok(StatsDimension::SourceIp),
        "site" => Ok(StatsDimension::Site),
        other => Err(RecorderError::InvalidArgument {
            field: "--by",
            reason: format!("{other:?}; use campaign, tenant, ip or site"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_parse_and_unknown_ones_name_the_flag() {
        assert_eq!(parse_dimension("ip").ok(), Some(StatsDimension::SourceIp));
        assert_eq!(
            parse_dimension("campaign").ok(),
            Some(StatsDimension::Campaign)
        );
        let err = parse_dimension("pool").expect_err("not a dimension");
        assert!(err.to_string().contains("--by"), "{err}");
    }
}
