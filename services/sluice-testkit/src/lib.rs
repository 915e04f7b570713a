//! Harnesses that several Sluice crates' tests share. A dev-dependency only:
//! nothing here ships in the binary.
//!
//! - [`servers`]: the Kafka and Cassandra the tests run against, failing with
//!   a message that names the server and how to start it;
//! - [`cql`]: a fresh, migrated keyspace;
//! - [`control`]: a Control server on `127.0.0.1:0`;
//! - [`cluster`]: real `sluice` processes (control replicas, ingest, senders)
//!   following control, and an admin client;
//! - [`query`]: a Query server over a ledger;
//! - [`sender`]: the ISP simulator, topics, envelopes in and events out, and a
//!   sender node run through `sluice_sender::run`;
//! - [`dev`]: the real `sluice dev` binary under test;
//! - [`leases`]: who used which source IP when (simulator record joined
//!   with events), overlaps and take-over times, and `sluice sender` as a
//!   process.

pub mod cluster;
pub mod control;
pub mod cql;
pub mod dev;
pub mod dns;
pub mod http;
pub mod leases;
pub mod mime;
pub mod mx;
pub mod otlp;
pub mod pki;
pub mod query;
pub mod sender;
pub mod servers;
pub mod smtp_sink;
pub mod webhooks;

/// `message` as a gRPC request carrying `authorization: Bearer <key>`.
pub fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {key}")
        .parse()
        .expect("a key fit for metadata");
    request.metadata_mut().insert("authorization", value);
    request
}
