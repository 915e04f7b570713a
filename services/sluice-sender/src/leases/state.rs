//! The shaping state of each source IP, kept next to its lease so that it
//! moves with the lease (docs/leases.md, "What moves with the lease"):
//! [`CqlIpStates`] in the `ip_state` table for a cluster, [`LocalIpStates`]
//! in process for one node.
//!
//! The guard. Each row carries the lease epoch of its last writer. A node
//! that takes a lease at epoch `e` first *claims* the row: it reads (epoch
//! `r`, `write_id`, state) and raises the epoch to `e` with a lightweight
//! transaction `IF epoch = r AND write_id = <read>`. If that applies, nothing
//! was written between the read and the claim, so the state read is the last
//! one any earlier holder wrote, and from then on every write of an earlier
//! holder (`IF epoch = <its epoch>`, lower than `e`) is refused. A holder's
//! writes are `IF epoch = e`. Lease epochs only grow and a row's epoch is only
//! ever set by the holder of that epoch, so a node that lost its lease can
//! never overwrite the state of the node that holds it now.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use scylla::client::session::Session;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use sluice_shaping::Snapshot;

use super::cql::{applied, err};
use crate::SenderError;

/// How long an `ip_state` row outlives its last write: one day less than an
/// `ip_leases` row, so a state row never outlives the lease row whose epochs
/// it follows (29 days).
pub const STATE_ROW_TTL: i32 = 29 * 86_400;

/// What a claim found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The row is now this holder's; the state the last holder wrote (`None`
    /// when no holder ever wrote one).
    Claimed(Option<Snapshot>),
    /// The row belongs to a later epoch than the caller's: its lease is lost.
    Newer(u64),
}

/// A stored row, for inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredIpState {
    /// Lease epoch of the last writer.
    pub epoch: u64,
    /// Node of the last writer.
    pub node: String,
    /// When it wrote.
    pub written: SystemTime,
    /// The state of the IP (that IP only), if one was written.
    pub state: Option<Snapshot>,
}

/// A per-IP state store of one pool. Every method is a few round trips.
pub trait IpStates: Send + Sync + 'static {
    /// Makes the row of `ip` `node`'s at `epoch` and returns the state it held.
    fn claim(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
    ) -> impl std::future::Future<Output = Result<Claim, SenderError>> + Send;
    /// Writes `state` if the row is still at `epoch`; false when refused (a
    /// later holder claimed it, or `epoch` never did).
    fn save(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        state: &Snapshot,
        now: SystemTime,
    ) -> impl std::future::Future<Output = Result<bool, SenderError>> + Send;
    /// The row of `ip`.
    fn read(
        &self,
        ip: IpAddr,
    ) -> impl std::future::Future<Output = Result<Option<StoredIpState>, SenderError>> + Send;
}

/// Either store, following `leases.kind`.
#[derive(Clone)]
pub enum AnyIpStates {
    /// The `ip_state` table.
    Cql(CqlIpStates),
    /// In process.
    Local(LocalIpStates),
}

impl IpStates for AnyIpStates {
    async fn claim(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
    ) -> Result<Claim, SenderError> {
        match self {
            Self::Cql(s) => s.claim(ip, node, epoch, now).await,
            Self::Local(s) => s.claim(ip, node, epoch, now).await,
        }
    }
    async fn save(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        state: &Snapshot,
        now: SystemTime,
    ) -> Result<bool, SenderError> {
        match self {
            Self::Cql(s) => s.save(ip, node, epoch, state, now).await,
            Self::Local(s) => s.save(ip, node, epoch, state, now).await,
        }
    }
    async fn read(&self, ip: IpAddr) -> Result<Option<StoredIpState>, SenderError> {
        match self {
            Self::Cql(s) => s.read(ip).await,
            Self::Local(s) => s.read(ip).await,
        }
    }
}

/// The in-process store (clones share it): the same rules as the table.
#[derive(Debug, Clone, Default)]
pub struct LocalIpStates {
    rows: Arc<Mutex<std::collections::BTreeMap<IpAddr, StoredIpState>>>,
}

impl IpStates for LocalIpStates {
    async fn claim(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
    ) -> Result<Claim, SenderError> {
        let mut rows = self.rows.lock().expect("ip state lock");
        let row = rows.entry(ip).or_insert_with(|| StoredIpState {
            epoch,
            node: node.to_owned(),
            written: now,
            state: None,
        });
        if row.epoch > epoch {
            return Ok(Claim::Newer(row.epoch));
        }
        row.epoch = epoch;
        row.node = node.to_owned();
        row.written = now;
        Ok(Claim::Claimed(row.state.clone()))
    }

    async fn save(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        state: &Snapshot,
        now: SystemTime,
    ) -> Result<bool, SenderError> {
        let mut rows = self.rows.lock().expect("ip state lock");
        match rows.get_mut(&ip) {
            Some(row) if row.epoch == epoch => {
                row.node = node.to_owned();
                row.written = now;
                row.state = Some(state.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn read(&self, ip: IpAddr) -> Result<Option<StoredIpState>, SenderError> {
        Ok(self.rows.lock().expect("ip state lock").get(&ip).cloned())
    }
}

/// The `ip_state` table of one pool (migration 7). The state is the
/// JSON of a one-IP [`Snapshot`] (the format of `state.file`).
#[derive(Clone)]
pub struct CqlIpStates {
    inner: Arc<Inner>,
}

struct Inner {
    session: Arc<Session>,
    pool: String,
    read: PreparedStatement,
    create: PreparedStatement,
    claim: PreparedStatement,
    save: PreparedStatement,
}

/// How often a claim re-reads after losing a race with a write.
const CLAIM_TRIES: usize = 5;

fn write_id() -> i64 {
    ulid::Ulid::new().random() as i64
}

fn ms(at: SystemTime) -> scylla::value::CqlTimestamp {
    let ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    scylla::value::CqlTimestamp(ms)
}

type Row = (
    Option<i64>,
    Option<String>,
    Option<scylla::value::CqlTimestamp>,
    Option<i64>,
    Option<Vec<u8>>,
);

impl CqlIpStates {
    /// Prepares the statements on `keyspace` for `pool` (the table must
    /// exist: `sluice migrate`).
    pub async fn open(
        session: Arc<Session>,
        keyspace: &str,
        pool: &str,
    ) -> Result<Self, SenderError> {
        let t = format!("{keyspace}.ip_state");
        let ttl = STATE_ROW_TTL;
        let texts = [
            format!(
                "SELECT epoch, node, written, write_id, state FROM {t} WHERE pool = ? AND ip = ?"
            ),
            format!(
                "INSERT INTO {t} (pool, ip, epoch, node, written, write_id) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL {ttl}"
            ),
            format!(
                "UPDATE {t} USING TTL {ttl} SET epoch = ?, node = ?, written = ?, write_id = ? WHERE pool = ? AND ip = ? IF epoch = ? AND write_id = ?"
            ),
            format!(
                "UPDATE {t} USING TTL {ttl} SET epoch = ?, state = ?, node = ?, written = ?, write_id = ? WHERE pool = ? AND ip = ? IF epoch = ?"
            ),
        ];
        let mut prepared = Vec::new();
        for text in texts {
            let statement = session
                .prepare(text.clone())
                .await
                .map_err(|e| err(&format!("preparing `{text}`"), e))?;
            prepared.push(statement);
        }
        let [mut read, create, claim, save]: [PreparedStatement; 4] = prepared
            .try_into()
            .map_err(|_| err("preparing", "statement count"))?;
        // A serial read sees the last applied lightweight transaction (and
        // finishes one left half-done), so a claim starts from the latest row.
        read.set_consistency(Consistency::Serial);
        Ok(Self {
            inner: Arc::new(Inner {
                session,
                pool: pool.to_owned(),
                read,
                create,
                claim,
                save,
            }),
        })
    }

    async fn row(&self, ip: &str) -> Result<Option<Row>, SenderError> {
        let i = &self.inner;
        let rows = i
            .session
            .execute_unpaged(&i.read, (&i.pool, ip))
            .await
            .map_err(|e| err("reading ip_state", e))?
            .into_rows_result()
            .map_err(|e| err("reading ip_state", e))?;
        rows.maybe_first_row::<Row>()
            .map_err(|e| err("reading ip_state", e))
    }
}

fn decode(ip: &str, bytes: Option<Vec<u8>>) -> Result<Option<Snapshot>, SenderError> {
    bytes
        .map(|b| serde_json::from_slice::<Snapshot>(&b))
        .transpose()
        .map_err(|e| {
            err(
                &format!("the stored state of {ip} is not a shaping state"),
                e,
            )
        })
}

impl IpStates for CqlIpStates {
    async fn claim(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
    ) -> Result<Claim, SenderError> {
        let (ip, e) = (ip.to_string(), epoch as i64);
        let i = &self.inner;
        for _ in 0..CLAIM_TRIES {
            match self.row(&ip).await? {
                None => {
                    let values = (&i.pool, &ip, e, node, ms(now), write_id());
                    if applied(&i.session, &i.create, values, "creating in ip_state").await? {
                        return Ok(Claim::Claimed(None));
                    }
                }
                Some((stored, ..)) if stored.unwrap_or(0) > e => {
                    return Ok(Claim::Newer(stored.unwrap_or(0) as u64));
                }
                Some((stored, _, _, id, state)) => {
                    let values = (
                        e,
                        node,
                        ms(now),
                        write_id(),
                        &i.pool,
                        &ip,
                        stored.unwrap_or(0),
                        id.unwrap_or(0),
                    );
                    if applied(&i.session, &i.claim, values, "claiming in ip_state").await? {
                        return Ok(Claim::Claimed(decode(&ip, state)?));
                    }
                }
            }
        }
        Err(err(
            "claiming in ip_state",
            format!("the row of {ip} changed under {CLAIM_TRIES} tries"),
        ))
    }

    async fn save(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        state: &Snapshot,
        now: SystemTime,
    ) -> Result<bool, SenderError> {
        let bytes = serde_json::to_vec(state).map_err(|e| err("encoding a state", e))?;
        let i = &self.inner;
        let ip = ip.to_string();
        let e = epoch as i64;
        // `epoch` is rewritten (same value) to refresh its TTL with the rest.
        let values = (e, bytes, node, ms(now), write_id(), &i.pool, &ip, e);
        applied(&i.session, &i.save, values, "writing ip_state").await
    }

    async fn read(&self, ip: IpAddr) -> Result<Option<StoredIpState>, SenderError> {
        let ip = ip.to_string();
        let Some((epoch, node, written, _, state)) = self.row(&ip).await? else {
            return Ok(None);
        };
        let written = SystemTime::UNIX_EPOCH
            + std::time::Duration::from_millis(written.map_or(0, |t| t.0.max(0) as u64));
        Ok(Some(StoredIpState {
            epoch: epoch.unwrap_or(0) as u64,
            node: node.unwrap_or_default(),
            written,
            state: decode(&ip, state)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(generation: u64) -> Snapshot {
        Snapshot {
            generation,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_claim_fences_older_epochs_and_returns_the_last_state() {
        let s = LocalIpStates::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let now = SystemTime::now();
        assert_eq!(
            s.claim(ip, "a", 1, now).await.unwrap(),
            Claim::Claimed(None)
        );
        assert!(s.save(ip, "a", 1, &snap(1), now).await.unwrap());
        assert_eq!(
            s.claim(ip, "b", 2, now).await.unwrap(),
            Claim::Claimed(Some(snap(1)))
        );
        assert!(
            !s.save(ip, "a", 1, &snap(9), now).await.unwrap(),
            "a lost it"
        );
        assert_eq!(s.read(ip).await.unwrap().unwrap().state, Some(snap(1)));
        assert_eq!(s.claim(ip, "a", 1, now).await.unwrap(), Claim::Newer(2));
        assert!(s.save(ip, "b", 2, &snap(2), now).await.unwrap());
    }
}
