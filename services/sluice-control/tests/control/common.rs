//! A real control server on 127.0.0.1:0 over a real store.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_control::{ConfigStore, CqlConfigStore};
use sluice_cql::CqlConfig;
use sluice_proto::v1::control_client::ControlClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running server; stops (and is awaited) on `stop`.
pub struct Server {
    pub addr: SocketAddr,
    stop: sluice_node::CancellationToken,
    task: Option<JoinHandle<Result<(), sluice_control::ControlError>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub async fn start(store: Arc<dyn ConfigStore>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let stop = sluice_node::CancellationToken::new();
        let task = tokio::spawn(sluice_control::run(
            sluice_control::ControlListeners { grpc: listener },
            sluice_control::ControlConfig::default(),
            sluice_control::ControlBackends { store },
            stop.clone(),
        ));
        Self {
            addr,
            stop,
            task: Some(task),
            _dir: None,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> ControlClient<Channel> {
        ControlClient::connect(self.endpoint())
            .await
            .expect("connect to the test control server")
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

/// The two back ends under test.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Embedded,
    Cassandra,
}

/// A fresh, empty store of `backend` (a tempdir, or a unique keyspace),
/// served on a fresh server.
pub async fn serve(backend: Backend) -> Server {
    match backend {
        Backend::Embedded => {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = sluice_control::open_embedded(dir.path()).expect("open embedded store");
            let mut server = Server::start(store).await;
            server._dir = Some(dir);
            server
        }
        Backend::Cassandra => Server::start(cassandra_store().await).await,
    }
}

/// A CQL store on a new keyspace of the Cassandra at `SLUICE_CASSANDRA`.
pub async fn cassandra_store() -> Arc<dyn ConfigStore> {
    let config = CqlConfig::from_env();
    let session = match sluice_cql::connect(&config).await {
        Ok(s) => s,
        Err(e) => panic!(
            "Cassandra is needed at {} (SLUICE_CASSANDRA): {e}. \
             Start it with `deploy/servers/cassandra.sh start`",
            config.contact_points
        ),
    };
    let ks = format!("control_test_{}", uuid::Uuid::new_v4().simple());
    let replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    sluice_cql::migrate(&session, &ks, replication)
        .await
        .expect("migrate the test keyspace");
    Arc::new(
        CqlConfigStore::open(session, &ks)
            .await
            .expect("open CQL store"),
    )
}
