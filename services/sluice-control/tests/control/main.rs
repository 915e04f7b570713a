//! Integration tests of sluice-control: the gRPC service over both stores
//! (one conformance suite), durability of the embedded store, the admin CLI.

mod admin;
mod common;
mod conformance;
mod embedded;
