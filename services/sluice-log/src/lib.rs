//! The Kafka back end of the Sluice message log.
//!
//! This crate owns how Sluice talks to Kafka: the producer settings that make
//! an acknowledged write durable (idempotent producer, `acks=all`, zstd), the
//! consumer settings that leave offset commits to the caller, topic
//! administration, and a reachability probe whose error tells the operator
//! which server is missing and how to start it. [`KafkaLog`] implements
//! `sluice_store::MessageLog` on Kafka, so services run unchanged on either
//! back end.

mod admin;
mod any;
mod config;
mod error;
mod group;
mod message_log;

pub use admin::{create_topic, probe};
pub use any::{DEFAULT_PARTITIONS, Log, LogConsumer};
pub use config::KafkaConfig;
pub use error::LogError;
pub use group::KafkaConsumer;
pub use message_log::KafkaLog;
