//! Leases in the `ip_leases` table: every take and renewal is a lightweight
//! transaction, so two nodes racing for one IP cannot both win.
//!
//! Expiry is the `expires` column, compared with the caller's clock. Rows
//! also carry a CQL TTL (`ROW_TTL`, refreshed by every write) so the rows of
//! IPs nobody uses any more disappear; within it the epoch keeps growing.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use super::Leases;
use crate::SenderError;

/// How long a lease row outlives its last write (30 days). Longer than an
/// `ip_state` row (`STATE_ROW_TTL`), so the epochs a state row follows never
/// start again at 1 under it.
const ROW_TTL: i32 = super::state::STATE_ROW_TTL + 86_400;

/// The CQL lease store of one pool.
#[derive(Clone)]
pub struct CqlLeases {
    inner: Arc<Inner>,
}

struct Inner {
    session: Arc<Session>,
    states: super::CqlIpStates,
    pool: String,
    read: PreparedStatement,
    insert: PreparedStatement,
    /// Sets (owner, epoch, expires) if the row still has (owner, epoch):
    /// every take, renewal and release.
    swap: PreparedStatement,
    beat: PreparedStatement,
    live: PreparedStatement,
}

pub(super) fn err(context: &str, e: impl std::fmt::Display) -> SenderError {
    SenderError::Leases(format!("{context}: {e}"))
}

fn ts(at: SystemTime) -> CqlTimestamp {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    CqlTimestamp(ms)
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_millis().div_ceil(1000))
        .unwrap_or(i32::MAX)
        .max(1)
}

impl CqlLeases {
    /// Prepares the statements on `keyspace` for `pool`, after checking the
    /// tables exist (`sluice migrate` creates them).
    pub async fn open(session: Session, keyspace: &str, pool: &str) -> Result<Self, SenderError> {
        sluice_cql::require_tables(&session, keyspace, sluice_cql::SENDER_TABLES).await?;
        let t = format!("{keyspace}.ip_leases");
        let h = format!("{keyspace}.sender_heartbeats");
        let set = "SET owner = ?, epoch = ?, expires = ? WHERE pool = ? AND ip = ? IF owner = ? AND epoch = ?";
        let texts = [
            format!("SELECT owner, epoch, expires FROM {t} WHERE pool = ? AND ip = ?"),
            format!(
                "INSERT INTO {t} (pool, ip, owner, epoch, expires) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS USING TTL {ROW_TTL}"
            ),
            format!("UPDATE {t} USING TTL {ROW_TTL} {set}"),
            format!("INSERT INTO {h} (pool, node, seen) VALUES (?, ?, ?) USING TTL ?"),
            format!("SELECT node FROM {h} WHERE pool = ?"),
        ];
        let mut prepared = Vec::new();
        for text in texts {
            let statement = session
                .prepare(text.clone())
                .await
                .map_err(|e| err(&format!("preparing `{text}`"), e))?;
            prepared.push(statement);
        }
        let [read, insert, swap, beat, live]: [PreparedStatement; 5] = prepared
            .try_into()
            .map_err(|_| err("preparing", "statement count"))?;
        let session = Arc::new(session);
        let states = super::CqlIpStates::open(session.clone(), keyspace, pool).await?;
        let inner = Inner {
            session,
            states,
            pool: pool.to_owned(),
            read,
            insert,
            swap,
            beat,
            live,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The `ip_state` store on the same session.
    pub fn ip_states(&self) -> super::CqlIpStates {
        self.inner.states.clone()
    }

    /// The current row of `ip`: (owner, epoch, expires).
    async fn row(&self, ip: &str) -> Result<Option<(String, i64, CqlTimestamp)>, SenderError> {
        let i = &self.inner;
        let rows = i
            .session
            .execute_unpaged(&i.read, (&i.pool, ip))
            .await
            .map_err(|e| err("reading ip_leases", e))?
            .into_rows_result()
            .map_err(|e| err("reading ip_leases", e))?;
        let row = rows
            .maybe_first_row::<(Option<String>, Option<i64>, Option<CqlTimestamp>)>()
            .map_err(|e| err("reading ip_leases", e))?;
        Ok(row.map(|(o, e, x)| {
            (
                o.unwrap_or_default(),
                e.unwrap_or(0),
                x.unwrap_or(CqlTimestamp(0)),
            )
        }))
    }

    /// Moves the lease from (`owner`, `epoch`) to (`node`, `new_epoch`) until `until`.
    async fn swap(
        &self,
        ip: &str,
        from: (&str, i64),
        to: (&str, i64),
        until: SystemTime,
    ) -> Result<bool, SenderError> {
        let i = &self.inner;
        let values = (to.0, to.1, ts(until), &i.pool, ip, from.0, from.1);
        applied(&i.session, &i.swap, values, "taking over in ip_leases").await
    }
}

impl Leases for CqlLeases {
    async fn heartbeat(
        &self,
        node: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<(), SenderError> {
        let i = &self.inner;
        i.session
            .execute_unpaged(&i.beat, (&i.pool, node, ts(now), secs(ttl)))
            .await
            .map_err(|e| err("writing sender_heartbeats", e))?;
        Ok(())
    }

    async fn live_nodes(&self) -> Result<BTreeSet<String>, SenderError> {
        let i = &self.inner;
        let rows = i
            .session
            .execute_unpaged(&i.live, (&i.pool,))
            .await
            .map_err(|e| err("reading sender_heartbeats", e))?
            .into_rows_result()
            .map_err(|e| err("reading sender_heartbeats", e))?;
        rows.rows::<(String,)>()
            .map_err(|e| err("reading sender_heartbeats", e))?
            .map(|r| {
                r.map(|(n,)| n)
                    .map_err(|e| err("reading sender_heartbeats", e))
            })
            .collect()
    }

    async fn acquire(
        &self,
        ip: IpAddr,
        node: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Option<u64>, SenderError> {
        let ip = ip.to_string();
        let until = now + ttl;
        match self.row(&ip).await? {
            None => {
                let i = &self.inner;
                let values = (&i.pool, &ip, node, 1_i64, ts(until));
                let won =
                    applied(&i.session, &i.insert, values, "inserting into ip_leases").await?;
                Ok(won.then_some(1))
            }
            Some((_, _, expires)) if expires.0 > ts(now).0 => Ok(None),
            Some((owner, epoch, _)) => {
                let won = self
                    .swap(&ip, (&owner, epoch), (node, epoch + 1), until)
                    .await?;
                Ok(won.then_some(epoch as u64 + 1))
            }
        }
    }

    async fn renew(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<bool, SenderError> {
        let (ip, epoch) = (ip.to_string(), epoch as i64);
        let i = &self.inner;
        let values = (node, epoch, ts(now + ttl), &i.pool, &ip, node, epoch);
        applied(&i.session, &i.swap, values, "renewing in ip_leases").await
    }

    async fn release(
        &self,
        ip: IpAddr,
        node: &str,
        epoch: u64,
        now: SystemTime,
    ) -> Result<(), SenderError> {
        let (ip, epoch) = (ip.to_string(), epoch as i64);
        let i = &self.inner;
        let values = (node, epoch, ts(now), &i.pool, &ip, node, epoch);
        applied(&i.session, &i.swap, values, "releasing in ip_leases").await?;
        Ok(())
    }
}

/// Runs a lightweight transaction; true when it applied (`[applied]`).
pub(super) async fn applied(
    session: &Session,
    statement: &PreparedStatement,
    values: impl scylla::serialize::row::SerializeRow,
    context: &str,
) -> Result<bool, SenderError> {
    let rows = session
        .execute_unpaged(statement, values)
        .await
        .map_err(|e| err(context, e))?
        .into_rows_result()
        .map_err(|e| err(context, e))?;
    let row = rows
        .rows::<scylla::value::Row>()
        .map_err(|e| err(context, e))?
        .next()
        .ok_or_else(|| err(context, "no [applied] row"))?
        .map_err(|e| err(context, e))?;
    let first = row.columns.first().and_then(Option::as_ref);
    Ok(first.and_then(|v| v.as_boolean()) == Some(true))
}
