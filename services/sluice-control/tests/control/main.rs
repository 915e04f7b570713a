//! Integration tests of sluice-control: the gRPC service over both stores
//! (one conformance suite), durability of the embedded store. (The admin CLI
//! is tested in the `sluice` binary, where it lives.)

mod common;
mod conformance;
mod embedded;
mod leases;
mod records;
mod unmigrated;
