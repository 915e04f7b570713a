//! Generates the Rust wire types from `sluice/v1/*.proto` with a vendored
//! `protoc`, so a build needs nothing the machine lacks.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "sluice/v1/envelope.proto",
    "sluice/v1/event.proto",
    "sluice/v1/ingest.proto",
    "sluice/v1/control.proto",
    "sluice/v1/query.proto",
    "sluice/v1/webhook.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Read at run time: a build script compiled for another checkout (a shared
    // target directory) must still find the protos of this one.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let include = protoc_bin_vendored::include_path()?;
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    // The encoded descriptors, for gRPC server reflection.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(out.join("sluice_v1_descriptor.bin"))
        .compile_with_config(config, &protos, &[root, include])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
