//! Opening and closing SMTP connections on a path.

use super::budget::Budget;
use super::decide::Gate;
use super::{Blocked, Engine, PathId};
use crate::time::Millis;
use crate::warmup::Signal;

/// An open connection granted by [`Engine::open_connection`]. Hand it back to
/// [`Engine::on_connection_close`] when the connection ends.
#[derive(Debug, PartialEq, Eq)]
pub struct Connection {
    id: u64,
    generation: u64,
    path: PathId,
    messages_left: Option<u32>,
    recipients_per_transaction: Option<u32>,
}

impl Connection {
    /// Engine-unique id of the connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The path the connection belongs to.
    pub fn path(&self) -> PathId {
        self.path
    }

    /// Most RCPT TO per transaction on this connection (`None`: unlimited).
    pub fn recipients_per_transaction(&self) -> Option<u32> {
        self.recipients_per_transaction
    }

    /// Takes one message slot of the connection; false when it has carried
    /// `messages_per_connection` messages and must be closed.
    pub fn take_message(&mut self) -> bool {
        match &mut self.messages_left {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }
}

impl Engine {
    /// Asks to open one more connection on `path`: checks suspension, the concurrent
    /// connection ceiling (scaled down while the path is slowed) and the new-connection rate,
    /// for the path and its provider, and counts the connection as open.
    pub fn open_connection(&mut self, now: Millis, path: PathId) -> Result<Connection, Blocked> {
        let p = &self.paths[path.0 as usize];
        let ip = &self.ips[p.ip as usize];
        if ip.state.signal == Signal::Pause || p.signal == Signal::Pause {
            return Err(Blocked::Held);
        }
        let mut b = Budget::new();
        for until in [ip.state.suspended_until, p.state.suspended_until] {
            if until > now {
                b.block(until);
            }
        }
        self.connect_budget(now, path.0, &mut b);
        if !b.is_ready() {
            return Err(if b.busy {
                Blocked::Busy
            } else {
                Blocked::Until(b.until.unwrap_or(now))
            });
        }
        Ok(self.commit_connect(now, path))
    }

    /// Connection limits of the path and its provider.
    fn connect_budget(&self, now: Millis, path: u32, b: &mut Budget) {
        let p = &self.paths[path as usize];
        p.shape
            .check_connect(&p.state.counters, p.open, now, self.permille(p), b);
        if let Some(v) = p.provider {
            let v = &self.providers[v as usize];
            v.shape.check_connect(&v.counters, v.open, now, 1000, b);
        }
    }

    /// Whether a new connection may open on `path` now (suspension is checked elsewhere).
    pub(super) fn connect_gate(&self, now: Millis, path: u32) -> Gate {
        let mut b = Budget::new();
        self.connect_budget(now, path, &mut b);
        match (b.busy, b.until) {
            (true, _) => Gate::Busy,
            (false, Some(t)) => Gate::Until(t),
            (false, None) => Gate::Pass(true),
        }
    }

    pub(super) fn commit_connect(&mut self, now: Millis, path: PathId) -> Connection {
        let p = &mut self.paths[path.0 as usize];
        p.open += 1;
        p.shape.commit_connect(&mut p.state.counters, now);
        if let Some(v) = p.provider {
            let v = &mut self.providers[v as usize];
            v.open += 1;
            v.shape.commit_connect(&mut v.counters, now);
        }
        self.next_connection += 1;
        Connection {
            id: self.next_connection,
            generation: self.generation,
            path,
            messages_left: p.shape.limits.messages_per_connection,
            recipients_per_transaction: p.shape.limits.recipients_per_transaction,
        }
    }

    /// Records that a connection closed. Connections granted before a restore are ignored
    /// (the restored engine starts with none open).
    pub fn on_connection_close(&mut self, _now: Millis, conn: Connection) {
        if conn.generation != self.generation {
            return;
        }
        let p = &mut self.paths[conn.path.0 as usize];
        p.open = p.open.saturating_sub(1);
        if let Some(v) = p.provider {
            let v = &mut self.providers[v as usize];
            v.open = v.open.saturating_sub(1);
        }
    }
}
