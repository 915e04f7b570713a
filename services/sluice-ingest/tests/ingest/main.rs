//! End-to-end tests of the ingest node against a real Kafka broker
//! (`deploy/servers/kafka.sh start`): gRPC, HTTP and SMTP front doors, and
//! DKIM checked by dkimpy.

mod common;
mod dkim;
mod grpc;
mod http;
mod limits;
mod shared_keys;
mod shared_quota;
mod smtp;
mod suppressions;
mod tracking;
