//! The link endpoints on the inbound role's HTTP listener (`http.listen`):
//! one-click unsubscribe, open pixel and click redirects
//! (docs/feedback.md). They face the internet like the MX: connection and
//! request limits, a bounded body time, and nothing done before the token's
//! signature holds ([`sluice_links`]).

use std::sync::Arc;

use prost::Message;
use sluice_links::tracking::Tracking;
use sluice_links::unsubscribe::Unsubscribe;
use sluice_links::{Links, Sink};
use sluice_log::{Log, MessageLog};
use sluice_node::CancellationToken;
use sluice_node::gate::Gate;
use sluice_node::listen::{HTTP1, open_for, serve_http};
use sluice_node::shed::{Protocol, Shed};
use sluice_proto::v1::Event;
use tokio::net::TcpListener;

use crate::InboundError;
use crate::config::InboundConfig;
use crate::metrics::InboundMetrics;

/// Publishes the endpoints' events to the events topic.
struct LogSink {
    log: Log,
    topic: String,
    metrics: Arc<InboundMetrics>,
}

impl Sink for LogSink {
    fn publish(&self, event: Event) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let payload = event.encode_to_vec();
            self.log
                .append(&self.topic, event.message_id.as_bytes(), &payload)
                .await
                .map(drop)
                .map_err(|err| err.to_string())
        })
    }

    fn count(&self, what: &str, outcome: &str) {
        self.metrics.link(what, outcome);
    }
}

/// Opens `listener` and returns the server to spawn; fails at once on a
/// plaintext listener off loopback or an unreadable certificate.
pub(crate) fn serve(
    listener: TcpListener,
    config: &InboundConfig,
    log: Log,
    metrics: Arc<InboundMetrics>,
    shutdown: CancellationToken,
) -> Result<impl Future<Output = std::io::Result<()>> + Send + 'static, InboundError> {
    let http = &config.http;
    let gate = Gate::new(http.max_connections, http.max_connections_per_ip);
    let incoming = open_for(listener, "http.listen", &http.tls, gate, HTTP1, false)
        .map_err(|err| InboundError::Config(err.0))?;
    tracing::info!(addr = %incoming.local_addr(), "inbound link endpoints listening");
    let tracking = (!http.tracking_base_url.is_empty())
        .then(|| Tracking::new(&http.tracking_base_url, &config.secret));
    let links = Arc::new(Links {
        unsubscribe: Unsubscribe::new(&http.unsubscribe_base_url, &config.secret),
        tracking,
        body_timeout: http.body_timeout.into(),
        sink: Arc::new(LogSink {
            log,
            topic: config.events_topic.clone(),
            metrics,
        }),
    });
    let shed = Shed::new(http.max_requests, Protocol::Http);
    Ok(serve_http(incoming, links.routes(), shed, shutdown))
}
