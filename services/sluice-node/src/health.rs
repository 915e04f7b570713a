//! `grpc.health.v1.Health` for every gRPC listener (tonic-health), so a
//! load balancer or a Kubernetes probe can ask whether a role serves. The
//! listener's services and the empty name (the whole server) answer
//! SERVING until `stop` is cancelled, then NOT_SERVING while the role
//! drains. No credentials: probes carry none, and the answer reveals only
//! that the role runs.
//!
//! [`reflection`] is gRPC server reflection (v1 and v1alpha, for tools such
//! as grpcurl): it describes the listener's services, their methods and
//! message types — the public `.proto` files, nothing more — also without
//! credentials; the calls themselves still need them.

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

/// Server reflection (v1) describing the messages and services of
/// `descriptor_sets` (encoded `FileDescriptorSet`s, e.g.
/// `sluice_proto::FILE_DESCRIPTOR_SET`) and the health service.
pub fn reflection(
    descriptor_sets: &[&'static [u8]],
) -> tonic_reflection::server::v1::ServerReflectionServer<
    impl tonic_reflection::server::v1::ServerReflection + use<>,
> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for set in descriptor_sets {
        builder = builder.register_encoded_file_descriptor_set(set);
    }
    builder
        .build_v1()
        .expect("the generated descriptor sets are valid")
}
