//! Taking tenants and pools from control (`control.addr`).

use std::sync::Arc;

use sluice_control_client::ClusterConfig;
use sluice_node::CancellationToken;
use tokio::sync::watch;

use crate::directory::Directory;
use crate::{IngestConfig, IngestError, Ingestor};

pub(crate) type Following = watch::Receiver<Arc<ClusterConfig>>;

/// With `control.addr` set: waits for control's snapshot and puts its
/// tenants and pools in force before any front door opens.
pub(crate) async fn start(
    config: &IngestConfig,
    ingestor: &Ingestor,
    shutdown: &CancellationToken,
) -> Result<Option<Following>, IngestError> {
    if !config.control.enabled() {
        return Ok(None);
    }
    let following =
        sluice_control_client::follow(&config.control, &config.tls, "ingest", shutdown.clone())
            .await
            .map_err(|err| IngestError::Config(format!("control: {err}")))?;
    let cluster = following.borrow().clone();
    ingestor.replace_directory(Directory::from_control(&cluster, &ingestor.directory()));
    Ok(Some(following))
}

/// Applies every configuration control publishes until the stream ends;
/// topics of pools added later are created as they appear.
pub(crate) async fn apply(
    mut following: Following,
    ingestor: Arc<Ingestor>,
    config: IngestConfig,
    log: sluice_log::Log,
) -> Result<(), IngestError> {
    while following.changed().await.is_ok() {
        let cluster = following.borrow_and_update().clone();
        let before = ingestor.directory();
        let directory = Directory::from_control(&cluster, &before);
        let added: Vec<String> = directory
            .pools()
            .difference(before.pools())
            .cloned()
            .collect();
        ingestor.replace_directory(directory);
        tracing::info!(
            revision = cluster.revision,
            tenants = cluster.tenants.len(),
            "control configuration applied"
        );
        if !added.is_empty() {
            crate::ensure_topics(&config, &log, &added).await;
        }
    }
    Ok(())
}
