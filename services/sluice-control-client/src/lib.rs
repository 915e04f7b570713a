//! How a Sluice node follows the control service.
//!
//! A node whose file sets `control.addr` takes its configuration from
//! control: [`follow`] loads a snapshot (`GetSnapshot`), then applies the
//! `Watch` stream from the snapshot's revision, reconnecting (to the next
//! address of `control.addr` when there are several replicas) and resuming
//! from the last revision it applied. The node reads the result from a
//! [`tokio::sync::watch`] channel of [`ClusterConfig`]s; every value is a
//! complete, consistent configuration.

mod cluster;
mod follow;
mod section;

pub use cluster::ClusterConfig;
pub use follow::{Bearer, Client, FollowError, client, client_over, follow, lazy_clients};
pub use section::ControlSection;
