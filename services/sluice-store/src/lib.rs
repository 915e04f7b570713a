//! The Sluice message log as a trait, and its embedded, durable back end.
//!
//! Sluice's services talk to a log of named topics, each split into a fixed
//! number of partitions, with consumer groups that commit how far they got.
//! Kafka is the distributed back end (`sluice-log`); [`EmbeddedLog`] keeps the
//! same log in a data directory on one machine (fjall, an LSM engine with a
//! write-ahead journal) so that `sluice dev` needs no servers and loses no
//! acknowledged record when killed with `kill -9`.
//!
//! See `docs/embedded-store.md` for the on-disk layout, the durability rules,
//! retention and the measurement behind the engine choice.

#[cfg(feature = "conformance")]
pub mod conformance;
mod embedded;
mod error;
mod group;
mod log;

pub use embedded::EmbeddedConsumer;
pub use embedded::EmbeddedLog;
pub use error::StoreError;
pub use group::{Commit, Delivery, GroupConsumer, POLL_RECORDS};
pub use log::{
    MessageLog, NewRecord, Position, ReadLimit, Record, check_group, check_topic, partition_for,
};
