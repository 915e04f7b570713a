//! Completing events that name only their message (late bounces,
//! complaints and `mailto:` unsubscribes from the inbound MX): the tenant,
//! recipient, campaign and pool come from the message's history, read
//! through the recorder's Query service.

use std::time::Duration;

use sluice_control_client::Bearer;
use sluice_node::CancellationToken;
use sluice_proto::v1::query_client::QueryClient;
use sluice_proto::v1::{Event, GetMessageRequest};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Client = QueryClient<InterceptedService<Channel, Bearer>>;

/// Times an unknown message is looked up again (the recorder may not have
/// written its history yet), two seconds apart.
const UNKNOWN_TRIES: u32 = 5;

/// The Query service events are completed from.
#[derive(Clone)]
pub(crate) struct History {
    client: Client,
}

impl History {
    /// A lazy client of `addr` (nothing connects until the first lookup).
    pub fn new(
        addr: &str,
        token_file: Option<&std::path::Path>,
        tls: &sluice_node::tls::TlsConfig,
    ) -> Result<Self, String> {
        let bearer = Bearer::from_setting("query_token_file", token_file)?;
        let channel = sluice_node::tls::endpoint(addr, tls)
            .map_err(|e| format!("query_addr: {e}"))?
            .connect_lazy();
        Ok(Self {
            client: QueryClient::with_interceptor(channel, bearer),
        })
    }

    /// Fills in `event`'s tenant (and its recipient, campaign and pool when
    /// empty) from its message's history; false when the message stays
    /// unknown. Query being unavailable is waited out (the event's offset
    /// is not committed meanwhile) until `stop`.
    pub async fn complete(&self, event: &mut Event, stop: &CancellationToken) -> bool {
        let (mut unknown, mut backoff) = (0, Duration::from_secs(1));
        loop {
            let request = GetMessageRequest {
                message_id: event.message_id.clone(),
            };
            match self.client.clone().get_message(request).await {
                Ok(status) => return fill(event, &status.into_inner().history),
                Err(status) if status.code() == Code::NotFound => {
                    unknown += 1;
                    if unknown >= UNKNOWN_TRIES {
                        return false;
                    }
                    backoff = Duration::from_secs(2);
                }
                Err(status) if status.code() == Code::InvalidArgument => return false,
                Err(status) => {
                    tracing::warn!(%status, message_id = %event.message_id,
                        "cannot read the message's history from Query (query_addr, query_token_file); trying again");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(backoff) => {}
            }
        }
    }
}

/// Completes `event` from the first event of `history` that names a
/// tenant; false when none does.
fn fill(event: &mut Event, history: &[Event]) -> bool {
    let Some(known) = history.iter().find(|e| !e.tenant.is_empty()) else {
        return false;
    };
    event.tenant = known.tenant.clone();
    for (mine, theirs) in [
        (&mut event.recipient, &known.recipient),
        (&mut event.campaign, &known.campaign),
        (&mut event.pool, &known.pool),
    ] {
        if mine.is_empty() {
            mine.clone_from(theirs);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_with_a_tenant_completes_the_rest() {
        let accepted = Event {
            tenant: "acme".into(),
            recipient: "bob@example.com".into(),
            campaign: "spring".into(),
            pool: "main".into(),
            ..Default::default()
        };
        let mut late = Event {
            message_id: "m1".into(),
            recipient: "kept@example.com".into(),
            ..Default::default()
        };
        assert!(!fill(&mut late, &[]));
        assert!(fill(&mut late, &[Event::default(), accepted]));
        assert_eq!(
            (
                late.tenant.as_str(),
                late.recipient.as_str(),
                late.campaign.as_str()
            ),
            ("acme", "kept@example.com", "spring")
        );
        assert_eq!(late.pool, "main");
    }
}
