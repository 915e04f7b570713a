//! The `[leases]` section of a sender's configuration.

use serde::Deserialize;
use sluice_shaping::Span;

/// Which lease store a node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeaseKind {
    /// In process: the node takes every IP of its pool. Correct only when it
    /// is the only node sending from these IPs (`sluice dev`, one node).
    #[default]
    Local,
    /// The `ip_leases` table in ScyllaDB/Cassandra, shared by the pool's nodes.
    Cql,
}

/// Source-IP leases (docs/leases.md): which of its pool's IPs this node may
/// send from.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LeasesSection {
    /// `"local"` (this node takes every IP; one node only) or `"cql"` (leases
    /// in ScyllaDB/Cassandra; required when several nodes share a pool).
    pub kind: LeaseKind,
    /// How long a lease lasts without renewal; a dead node's IPs are taken
    /// over about this long after it died.
    pub ttl: Span,
    /// How often leases are renewed and shares rebalanced (well below `ttl`,
    /// e.g. `ttl / 3`).
    pub renew_interval: Span,
    /// The node stops using an IP this long before its lease could expire
    /// when renewal fails; it covers clock skew between nodes, the
    /// dispatcher's reaction time and short transactions on the wire.
    pub margin: Span,
    /// With `kind = "cql"`: contact points, comma separated `host:port`.
    pub contact_points: String,
    /// With `kind = "cql"`: the keyspace migrated by `sluice migrate`.
    pub keyspace: String,
}

impl Default for LeasesSection {
    fn default() -> Self {
        Self {
            kind: LeaseKind::Local,
            ttl: Span::secs(30),
            renew_interval: Span::secs(10),
            margin: Span::secs(5),
            contact_points: "127.0.0.1:9042".into(),
            keyspace: "sluice".into(),
        }
    }
}

impl LeasesSection {
    /// Checks that renewal comes well before expiry.
    pub fn check(&self) -> Result<(), String> {
        let (ttl, every, margin) = (self.ttl.0, self.renew_interval.0, self.margin.0);
        if every == 0 || margin == 0 {
            return Err("renew_interval and margin must be above zero".into());
        }
        if every + margin >= ttl {
            return Err(format!(
                "renew_interval ({every} ms) + margin ({margin} ms) must be below ttl ({ttl} ms), \
                 or a lease would lapse between two renewals"
            ));
        }
        Ok(())
    }
}
