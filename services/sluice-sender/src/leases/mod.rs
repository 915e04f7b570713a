//! Source-IP leases (docs/leases.md): a source IP is driven by at most one
//! sender node at a time. A node holds a lease per IP it sends from, with an
//! owner, an epoch that grows on every take, and an expiry; it renews well
//! before expiry and stops using an IP at `expires - margin` when renewal
//! fails.
//!
//! [`Leases`] is the store: [`CqlLeases`] (ScyllaDB/Cassandra, lightweight
//! transactions) for a cluster, [`LocalLeases`] (in process) for a single
//! node. [`keeper::keep`] is the loop that holds the node's fair share and
//! tells the dispatcher which IPs it may use.

mod config;
mod cql;
pub mod keeper;
mod local;
pub mod state;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

pub use config::{LeaseKind, LeasesSection};
pub use cql::CqlLeases;
pub use keeper::{Held, HeldLease};
pub use local::LocalLeases;
pub use state::{AnyIpStates, Claim, CqlIpStates, IpStates, LocalIpStates, StoredIpState};

use crate::SenderError;

/// A lease store for one pool.
///
/// Every method is one round trip; none waits for a lease. Times are wall
/// clock (`SystemTime`) because expiries are compared across nodes.
pub trait Leases: Send + Sync + 'static {
    /// Says that `node` is alive for `ttl` (its heartbeat).
    fn heartbeat(
        &self,
        node: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), SenderError>> + Send;
    /// The nodes whose heartbeat has not expired.
    fn live_nodes(&self) -> impl Future<Output = Result<BTreeSet<String>, SenderError>> + Send;
    /// Takes `ip` for `node` until `now + ttl` when nobody holds it or its
    /// lease expired before `now`; returns the new epoch (one more than the
    /// last), or `None` when another node holds it.
    fn acquire(
        &self,
        ip: IpAddr,
        node: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<u64>, SenderError>> + Send;
    /// Extends `node`'s lease of `ip` at `epoch` to `now + ttl`; false when
    /// the lease is no longer `node`'s at that epoch (someone took it).
    fn renew(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, SenderError>> + Send;
    /// Gives `ip` up: the lease ends at `now` (the caller may pass a time a
    /// little ahead, for transactions on the wire) if it is still `node`'s
    /// at `epoch`. The epoch stays, so the next take gets a higher one.
    fn release(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), SenderError>> + Send;
}

/// Either lease store, chosen by `leases.kind`.
#[derive(Clone)]
pub enum AnyLeases {
    /// ScyllaDB/Cassandra.
    Cql(CqlLeases),
    /// In process, for one node.
    Local(LocalLeases),
}

impl AnyLeases {
    /// The per-IP state store next to this lease store (same database, or
    /// the same process): what moves with a lease.
    pub fn ip_states(&self) -> AnyIpStates {
        match self {
            AnyLeases::Cql(l) => AnyIpStates::Cql(l.ip_states()),
            AnyLeases::Local(l) => AnyIpStates::Local(l.ip_states()),
        }
    }
}

impl From<LocalLeases> for AnyLeases {
    fn from(leases: LocalLeases) -> Self {
        Self::Local(leases)
    }
}

impl From<CqlLeases> for AnyLeases {
    fn from(leases: CqlLeases) -> Self {
        Self::Cql(leases)
    }
}

macro_rules! each {
    ($any:expr, $l:ident => $call:expr) => {
        match $any {
            AnyLeases::Cql($l) => $call.await,
            AnyLeases::Local($l) => $call.await,
        }
    };
}

impl Leases for AnyLeases {
    async fn heartbeat(
        &self,
        node: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<(), SenderError> {
        each!(self, l => l.heartbeat(node, now, ttl))
    }
    async fn live_nodes(&self) -> Result<BTreeSet<String>, SenderError> {
        each!(self, l => l.live_nodes())
    }
    async fn acquire(
        &self,
        ip: IpAddr,
        node: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Option<u64>, SenderError> {
        each!(self, l => l.acquire(ip, node, now, ttl))
    }
    async fn renew(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<bool, SenderError> {
        each!(self, l => l.renew(ip, node, epoch, now, ttl))
    }
    async fn release(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
    ) -> Result<(), SenderError> {
        each!(self, l => l.release(ip, node, epoch, now))
    }
}

/// How many of `ips` IPs one of `live` nodes should hold: `ceil(ips / live)`
/// (a node always counts itself, so `live` is at least 1). With more IPs
/// than nodes × share, some nodes hold one fewer; with fewer IPs than nodes,
/// some hold none.
pub fn fair_share(ips: usize, live: usize) -> usize {
    ips.div_ceil(live.max(1))
}

/// Whether this host can send from `ip`: an address no interface of the
/// host carries cannot be bound, and a lease on it would only turn every
/// delivery from it into a failure while a host that has it waits. The
/// unspecified address (`0.0.0.0`, `::`: the kernel picks) always can.
pub fn can_send_from(ip: IpAddr) -> bool {
    ip.is_unspecified() || std::net::UdpSocket::bind(std::net::SocketAddr::new(ip, 0)).is_ok()
}

/// Warns about the pool IPs this host cannot send from (left to the nodes
/// on hosts that carry them).
pub fn warn_foreign(ips: &[IpAddr]) {
    let foreign: Vec<IpAddr> = ips
        .iter()
        .copied()
        .filter(|ip| !can_send_from(*ip))
        .collect();
    if !foreign.is_empty() {
        tracing::warn!(
            ?foreign,
            "pool IPs this host cannot bind are left to senders on hosts that carry them; configure them on an interface here if this node should send from them"
        );
    }
}

/// The order in which `node` tries `ips`: rotated by a hash of its name, so
/// that nodes starting together first reach for different IPs.
pub fn preference(ips: &[IpAddr], node: &str) -> Vec<IpAddr> {
    let mut out = ips.to_vec();
    out.sort();
    if !out.is_empty() {
        // FNV-1a: stable across processes and builds (std's hasher is not).
        let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let len = out.len();
        out.rotate_left((hash % len as u64) as usize);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_share_is_the_ceiling_of_ips_per_live_node() {
        assert_eq!(fair_share(4, 1), 4);
        assert_eq!(fair_share(4, 2), 2);
        assert_eq!(fair_share(4, 3), 2);
        assert_eq!(fair_share(4, 4), 1);
        assert_eq!(fair_share(4, 5), 1);
        assert_eq!(fair_share(0, 3), 0);
        assert_eq!(fair_share(3, 0), 3, "a node counts itself");
    }

    #[test]
    fn shares_of_all_live_nodes_cover_every_ip() {
        for ips in 0..20 {
            for live in 1..8 {
                assert!(fair_share(ips, live) * live >= ips, "{ips} {live}");
            }
        }
    }

    #[test]
    fn preference_is_a_stable_rotation_of_the_sorted_ips() {
        let ips: Vec<IpAddr> = ["10.0.0.3", "10.0.0.1", "10.0.0.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let a = preference(&ips, "node-a");
        assert_eq!(a, preference(&ips, "node-a"), "stable");
        let mut sorted = ips.clone();
        sorted.sort();
        let start = sorted.iter().position(|ip| *ip == a[0]).unwrap();
        sorted.rotate_left(start);
        assert_eq!(a, sorted, "a rotation of the sorted IPs");
        assert!(preference(&[], "node-a").is_empty());
    }

    #[test]
    fn only_addresses_this_host_carries_can_be_sent_from() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(can_send_from(ip("127.0.0.10")), "loopback is bindable");
        assert!(can_send_from(ip("0.0.0.0")), "the kernel picks");
        // 192.0.2.0/24 (TEST-NET-1) is on no interface of a test host.
        assert!(!can_send_from(ip("192.0.2.77")));
    }
}
