//! Open SMTP sessions: settling finished delivery tasks (each held a
//! session from one source IP) and the `smtp_connections` gauge, busy and
//! idle per source IP.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tokio::task::{Id, JoinError};

use super::Dispatcher;
use crate::deliver::Done;

impl Dispatcher {
    /// Settles a delivery task that ended; one that failed leaves its record
    /// uncommitted.
    pub(super) fn joined(&mut self, joined: Result<(Id, Done), JoinError>) {
        match joined {
            Ok((task, done)) => {
                self.busy.remove(&task);
                self.finish(done);
            }
            Err(err) => {
                self.busy.remove(&err.id());
                tracing::error!(%err, "a delivery task failed; its record stays uncommitted and will be retried by the partition's next owner");
            }
        }
    }

    /// Sets the gauge of open sessions, busy and idle, for every IP of the
    /// pool (0 without sessions) and any other IP that still has some.
    pub(super) fn publish_connections(&self) {
        let mut open: BTreeMap<IpAddr, (i64, i64)> = self
            .cfg
            .source_ips()
            .into_iter()
            .map(|ip| (ip, (0, 0)))
            .collect();
        for ip in self.busy.values() {
            open.entry(*ip).or_default().0 += 1;
        }
        for (path, sessions) in self.idle.iter().filter(|(_, s)| !s.is_empty()) {
            let ip = self.engine.path(*path).ip;
            open.entry(ip).or_default().1 += sessions.len() as i64;
        }
        self.metrics.set_connections(&open);
    }
}
