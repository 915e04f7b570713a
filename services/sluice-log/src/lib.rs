//! The Sluice message log: one trait, two back ends.
//!
//! Sluice's services talk to a log of named topics, each split into a fixed
//! number of partitions, with consumer groups that commit how far they got.
//! [`MessageLog`] and [`GroupConsumer`] describe that log; [`kafka`] puts it
//! on a Kafka cluster (idempotent `acks=all` producer, consumer groups with
//! manual commits, topic admin, a reachability probe that says how to start a
//! broker); [`embedded`] keeps it in a data directory on one machine (fjall,
//! fsync'd) so that `sluice dev` needs no servers and loses no acknowledged
//! record when killed with `kill -9`. [`Log`] is either, behind one type, so
//! services are written once.
//!
//! Both back ends fail with [`LogError`] and report consumer-group
//! rebalances as [`Rebalance`] events ([`GroupConsumer::rebalances`]).
//!
//! See `docs/message-log.md` for the on-disk layout, the durability rules,
//! retention, the error classes and the rebalance events.

mod any;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod embedded;
mod error;
mod fence;
mod group;
pub mod kafka;
mod log;
mod topics;

pub use any::{DEFAULT_PARTITIONS, Log, LogConsumer};
pub use embedded::{EmbeddedConsumer, EmbeddedLog};
pub use error::LogError;
pub use fence::{Fence, Work};
pub use group::{Commit, Delivery, GroupConsumer, POLL_RECORDS, PartitionLag, Rebalance};
pub use kafka::{
    KafkaConfig, KafkaConsumer, KafkaLog, TopicHealth, create_topic, create_topic_as, probe,
    topic_health,
};
pub use log::{
    Headers, MAX_HEADER_NAME_BYTES, MAX_HEADER_VALUE_BYTES, MAX_HEADERS, MAX_RECORD_BYTES,
    MessageLog, NewRecord, Position, ReadLimit, Record, check_group, check_headers, check_record,
    check_topic, header, partition_for,
};
pub use topics::{TopicSpec, TopicsConfig};
