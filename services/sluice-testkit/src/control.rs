//! A real Control server on `127.0.0.1:0`, run through `sluice_control::run`.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_control::{ConfigStore, ControlBackends, ControlConfig, ControlError, ControlListeners};
use sluice_node::CancellationToken;
use sluice_proto::v1::control_client::ControlClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running Control server; [`Server::stop`] stops it and checks it ended
/// cleanly.
pub struct Server {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ControlError>>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Serves `store` to every caller without a token
    /// (`allow_unauthenticated`, no credentials).
    pub async fn start(store: Arc<dyn ConfigStore>) -> Self {
        let config = ControlConfig {
            allow_unauthenticated: true,
            ..ControlConfig::default()
        };
        Self::start_with(store, config).await
    }

    /// Serves `store` with `config` (its credentials; `listen` is ignored:
    /// the server binds 127.0.0.1:0).
    pub async fn start_with(store: Arc<dyn ConfigStore>, config: ControlConfig) -> Self {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = grpc.local_addr().expect("local addr");
        let stop = CancellationToken::new();
        let task = tokio::spawn(sluice_control::run(
            ControlListeners {
                grpc,
                metrics: None,
            },
            config,
            ControlBackends {
                store,
                metrics: Default::default(),
            },
            stop.clone(),
        ));
        Self {
            addr,
            stop,
            task,
            _dir: None,
        }
    }

    /// Serves a fresh embedded store in a temporary directory.
    pub async fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sluice_control::open_embedded(dir.path()).expect("open embedded store");
        let mut server = Self::start(store).await;
        server._dir = Some(dir);
        server
    }

    /// Serves a fresh embedded store in a temporary directory with `config`.
    pub async fn embedded_with(config: ControlConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sluice_control::open_embedded(dir.path()).expect("open embedded store");
        let mut server = Self::start_with(store, config).await;
        server._dir = Some(dir);
        server
    }

    /// `http://` URL of the server.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A gRPC client of the server.
    pub async fn client(&self) -> ControlClient<Channel> {
        ControlClient::connect(self.endpoint())
            .await
            .expect("connect to the test control server")
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("control server task")
            .expect("control server ended cleanly");
    }
}
