//! What a control node runs on: its listener and its configuration store.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{ControlConfig, StoreKind};
use crate::{ConfigStore, ControlError};

/// The control node's listener.
#[derive(Debug)]
pub struct ControlListeners {
    /// gRPC `sluice.v1.Control`.
    pub grpc: TcpListener,
    /// `GET /metrics` (docs/metrics.md); `None`: no endpoint.
    pub metrics: Option<TcpListener>,
}

impl ControlListeners {
    /// Binds `config.listen` (for `sluice control`; tests bind `127.0.0.1:0`).
    pub async fn bind(config: &ControlConfig) -> Result<Self, ControlError> {
        let grpc = sluice_node::bind("listen", &config.listen)
            .await
            .map_err(ControlError::Listen)?;
        let metrics = config.metrics.bind().await.map_err(ControlError::Listen)?;
        Ok(Self { grpc, metrics })
    }
}

/// The store the configuration lives in.
#[derive(Clone)]
pub struct ControlBackends {
    pub store: Arc<dyn ConfigStore>,
    /// Where the process counts its work (docs/metrics.md).
    pub metrics: Arc<crate::metrics::ControlMetrics>,
}

impl ControlBackends {
    /// Opens the store `config.store` names: the embedded one in
    /// `config.data_dir` (created when missing), or the CQL one (the keyspace
    /// must be migrated: `sluice migrate`).
    pub async fn open(config: &ControlConfig) -> Result<Self, ControlError> {
        let store = match config.store {
            StoreKind::Embedded => {
                sluice_node::secret::private_dir(&config.data_dir).map_err(|source| {
                    ControlError::Listen(std::io::Error::new(
                        source.kind(),
                        format!(
                            "data_dir: cannot create {}: {source}",
                            config.data_dir.display()
                        ),
                    ))
                })?;
                crate::open_embedded(&config.data_dir)?
            }
            StoreKind::Cassandra => {
                let cql = sluice_cql::CqlConfig {
                    contact_points: config.cassandra.clone(),
                    connect_timeout: Duration::from_secs(10),
                };
                crate::open_cql(&cql, &config.keyspace).await?
            }
        };
        Ok(Self {
            store,
            metrics: Arc::default(),
        })
    }
}
