//! Where control keeps the configuration: the [`ConfigStore`] trait and its
//! two back ends, [`EmbeddedConfigStore`] (fjall, in a data directory) and
//! [`CqlConfigStore`] (Cassandra/ScyllaDB).
//!
//! Every successful change gets the next revision and is appended to a
//! change log kept by the store, so Watch can replay everything after the
//! revision a watcher last applied. The log is not compacted yet.

mod cql;
mod cql_rows;
mod embedded;

pub use cql::CqlConfigStore;
pub use embedded::EmbeddedConfigStore;

use std::collections::HashMap;

use sluice_proto::v1::{ConfigChange, IpLease, Suppression};

use crate::ControlError;
use crate::record::{Kind, Record};

/// The configuration store. Inputs are validated by the service before they
/// get here; a store only keeps what it is given.
#[tonic::async_trait]
pub trait ConfigStore: Send + Sync + 'static {
    /// Writes (creates or replaces) a record; returns the new revision.
    async fn put(&self, record: Record) -> Result<u64, ControlError>;
    /// Removes a record; the new revision (its change log entry is a
    /// `Deleted`), or `None`, changing nothing, when there was none.
    async fn delete(&self, kind: Kind, name: &str) -> Result<Option<u64>, ControlError>;
    /// The record of `kind` named `name`, if any.
    async fn get(&self, kind: Kind, name: &str) -> Result<Option<Record>, ControlError>;
    /// Every record of `kind`, ordered by name.
    async fn list(&self, kind: Kind) -> Result<Vec<Record>, ControlError>;
    /// Adds (or replaces) a suppression; returns the new revision.
    async fn add_suppression(&self, suppression: Suppression) -> Result<u64, ControlError>;
    /// Adds (or replaces) many suppressions, already validated, without a
    /// revision of their own. This default enters them one by one; the
    /// stores override it with fewer writes.
    async fn import_suppressions(&self, entries: Vec<Suppression>) -> Result<(), ControlError> {
        for entry in entries {
            self.add_suppression(entry).await?;
        }
        Ok(())
    }
    /// Removes a suppression; the new revision, or `None` if there was none.
    async fn remove_suppression(
        &self,
        tenant: &str,
        address: &str,
    ) -> Result<Option<u64>, ControlError>;
    /// Up to `limit` suppressions of `tenant` with addresses after `after`
    /// (empty: from the start), ordered by address.
    async fn list_suppressions(
        &self,
        tenant: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Suppression>, ControlError>;
    /// The revision of the latest change (0 before any).
    async fn revision(&self) -> Result<u64, ControlError>;
    /// The unexpired IP leases the store can see, by canonical address.
    /// Only the CQL store sees them (the sender's `ip_leases` table in the
    /// same keyspace); the embedded store has none.
    async fn leases(&self) -> Result<HashMap<String, IpLease>, ControlError> {
        Ok(HashMap::new())
    }
    /// Up to `limit` logged changes with revisions above `revision`, in order.
    async fn changes_after(
        &self,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<ConfigChange>, ControlError>;
}
