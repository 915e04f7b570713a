//! The back ends control is tested on, each served by the test kit's real
//! Control server on 127.0.0.1:0.

use std::sync::Arc;

use sluice_control::{ConfigStore, ControlConfig, CqlConfigStore};
pub use sluice_testkit::control::Server;

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
        Backend::Embedded => Server::embedded().await,
        Backend::Cassandra => Server::start(cassandra_store().await).await,
    }
}

/// Like [`serve`], with `config` (credentials).
pub async fn serve_with(backend: Backend, config: ControlConfig) -> Server {
    match backend {
        Backend::Embedded => Server::embedded_with(config).await,
        Backend::Cassandra => Server::start_with(cassandra_store().await, config).await,
    }
}

/// A CQL store on a new, migrated keyspace of the Cassandra at `SLUICE_CASSANDRA`.
pub async fn cassandra_store() -> Arc<dyn ConfigStore> {
    let (session, keyspace) = sluice_testkit::cql::migrated_keyspace("control_test").await;
    Arc::new(
        CqlConfigStore::open(session, &keyspace)
            .await
            .expect("open CQL store"),
    )
}
