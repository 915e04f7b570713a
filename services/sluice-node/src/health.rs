//! `grpc.health.v1.Health` for every gRPC listener (tonic-health), so a
//! load balancer or a Kubernetes probe can ask whether a role serves. The
//! listener's services and the empty name (the whole server) answer
//! SERVING until `stop` is cancelled, then NOT_SERVING while the role
//! drains. No credentials: probes carry none, and the answer reveals only
//! that the role runs.

use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::CancellationToken;

/// The health service of a listener serving `services` (their full gRPC
/// names, e.g. `sluice.v1.Ingest`).
pub async fn service(
    services: &[&str],
    stop: CancellationToken,
) -> HealthServer<impl Health + use<>> {
    let (reporter, server) = tonic_health::server::health_reporter();
    let mut names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    names.push(String::new());
    for name in &names {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    tokio::spawn(async move {
        stop.cancelled().await;
        for name in &names {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    });
    server
}
