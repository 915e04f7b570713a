//! A real Query server (`sluice.v1.Query`) on `127.0.0.1:0` over a ledger,
//! behind the recorder's authentication, with well-known test tokens.

use std::sync::Arc;

use sluice_node::CancellationToken;
use sluice_node::auth::{Credential, Role};
use sluice_recorder::{AnyLedger, QueryAuth, QueryService, RecorderConfig};

/// The token of the test credential with role admin.
pub const ADMIN_TOKEN: &str = "testkit-query-admin";
/// The token of the test credential with role operator.
pub const OPERATOR_TOKEN: &str = "testkit-query-operator";
/// The token of the test credential with role node.
pub const NODE_TOKEN: &str = "testkit-query-node";

/// Credentials for [`ADMIN_TOKEN`], [`OPERATOR_TOKEN`] and [`NODE_TOKEN`].
pub fn credentials() -> Vec<Credential> {
    let credential = |name: &str, role, token: &str| Credential {
        name: name.into(),
        role,
        token_hash: sluice_node::secret::hash_secret(token),
    };
    vec![
        credential("test-admin", Role::Admin, ADMIN_TOKEN),
        credential("test-operator", Role::Operator, OPERATOR_TOKEN),
        credential("test-node", Role::Node, NODE_TOKEN),
    ]
}

/// `request` with `authorization: Bearer <token>`.
pub fn with_token<T>(request: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(request);
    let value = format!("Bearer {token}").parse().expect("ASCII token");
    request.metadata_mut().insert("authorization", value);
    request
}

/// Writes `token` to a new file in `dir` (for a client's `token_file`).
pub fn token_file(dir: &std::path::Path, token: &str) -> std::path::PathBuf {
    let file = dir.join(format!("query-{}.token", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, token).expect("write the token file");
    file
}

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

/// Serves Query from `ledger` to the test [`credentials`].
pub async fn serve(ledger: Arc<AnyLedger>) -> Server {
    let config = RecorderConfig {
        credentials: credentials(),
        ..RecorderConfig::default()
    };
    serve_with(
        ledger,
        QueryAuth::from_config(&config).expect("test credentials"),
    )
    .await
}

/// Serves Query from `ledger` to the callers `auth` admits.
pub async fn serve_with(ledger: Arc<AnyLedger>, auth: QueryAuth) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(QueryService::server(ledger, Arc::new(auth)))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    Server { url, stop }
}

/// A gRPC Query client of `url` that sends `token` with every call.
pub type Client = sluice_proto::v1::query_client::QueryClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        sluice_control_client::Bearer,
    >,
>;

/// Connects to the Query service at `url`, sending `token` (`None`: no
/// token) with every call.
pub async fn client(url: impl AsRef<str>, token: Option<&str>) -> Result<Client, String> {
    let channel = tonic::transport::Endpoint::from_shared(url.as_ref().to_owned())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let bearer = sluice_control_client::Bearer::new(token)?;
    Ok(sluice_proto::v1::query_client::QueryClient::with_interceptor(channel, bearer))
}

/// [`client`] with [`ADMIN_TOKEN`].
pub async fn admin(url: impl AsRef<str>) -> Result<Client, String> {
    client(url, Some(ADMIN_TOKEN)).await
}
