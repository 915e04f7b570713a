//! A real Query server (`sluice.v1.Query`) on `127.0.0.1:0` over a ledger.

use std::sync::Arc;

use sluice_node::CancellationToken;
use sluice_proto::v1::query_server::QueryServer;
use sluice_recorder::{AnyLedger, QueryService};

/// A running Query server; it stops when this is dropped.
pub struct Server {
    /// `http://` URL of the server.
    pub url: String,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves Query from `ledger`.
pub async fn serve(ledger: Arc<AnyLedger>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(QueryServer::new(QueryService::new(ledger)))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    Server { url, stop }
}
