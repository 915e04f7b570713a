//! The in-process lease store: the same rules as the CQL table, kept in a
//! map. One `sluice dev` process is the only node of its pools, so it takes
//! every lease and nobody can contend for one; the store exists so that the
//! node runs the same code path (keeper, dispatcher gating, epochs in
//! events) as a cluster node, and so the rules can be tested without a
//! database.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::Leases;
use crate::SenderError;

#[derive(Debug, Clone)]
struct Row {
    owner: String,
    epoch: u64,
    expires: SystemTime,
}

#[derive(Debug, Default)]
struct Table {
    leases: BTreeMap<IpAddr, Row>,
    heartbeats: BTreeMap<String, SystemTime>,
}

/// Leases of one process (clones share the table).
#[derive(Debug, Clone, Default)]
pub struct LocalLeases {
    table: Arc<Mutex<Table>>,
    states: super::LocalIpStates,
}

impl LocalLeases {
    /// The per-IP state store of this process (clones share it).
    pub fn ip_states(&self) -> super::LocalIpStates {
        self.states.clone()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("lease table lock")
    }
}

impl Leases for LocalLeases {
    async fn heartbeat(
        &self,
        node: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<(), SenderError> {
        self.table().heartbeats.insert(node.to_owned(), now + ttl);
        Ok(())
    }

    async fn live_nodes(&self) -> Result<BTreeSet<String>, SenderError> {
        let now = SystemTime::now();
        let table = self.table();
        Ok(table
            .heartbeats
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(node, _)| node.clone())
            .collect())
    }

    async fn acquire(
        &self,
        ip: IpAddr,
        node: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Option<u64>, SenderError> {
        let mut table = self.table();
        let epoch = match table.leases.get(&ip) {
            Some(row) if row.expires > now => return Ok(None),
            Some(row) => row.epoch + 1,
            None => 1,
        };
        let row = Row {
            owner: node.to_owned(),
            epoch,
            expires: now + ttl,
        };
        table.leases.insert(ip, row);
        Ok(Some(epoch))
    }

    async fn renew(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<bool, SenderError> {
        let mut table = self.table();
        match table.leases.get_mut(&ip) {
            Some(row) if row.owner == node && row.epoch == epoch => {
                row.expires = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
    ) -> Result<(), SenderError> {
        let mut table = self.table();
        if let Some(row) = table.leases.get_mut(&ip)
            && row.owner == node
            && row.epoch == epoch
        {
            row.expires = now;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_owner_at_a_time_and_every_take_raises_the_epoch() {
        let leases = LocalLeases::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let ttl = Duration::from_secs(10);
        assert_eq!(leases.acquire(ip, "a", t0, ttl).await.unwrap(), Some(1));
        assert_eq!(leases.acquire(ip, "b", t0, ttl).await.unwrap(), None);
        assert!(leases.renew(ip, "a", 1, t0, ttl).await.unwrap());
        let later = t0 + Duration::from_secs(11);
        assert_eq!(leases.acquire(ip, "b", later, ttl).await.unwrap(), Some(2));
        assert!(
            !leases.renew(ip, "a", 1, later, ttl).await.unwrap(),
            "stale owner"
        );
        leases.release(ip, "a", 1, later).await.unwrap();
        assert_eq!(
            leases.acquire(ip, "a", later, ttl).await.unwrap(),
            None,
            "a stale release changes nothing"
        );
        leases.release(ip, "b", 2, later).await.unwrap();
        assert_eq!(
            leases
                .acquire(ip, "a", later + Duration::from_millis(1), ttl)
                .await
                .unwrap(),
            Some(3)
        );
    }
}
