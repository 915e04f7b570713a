//! Gating the engine by IP leases: an IP the node does not hold (or whose
//! lease is past its deadline) is paused in the engine the way a reputation
//! signal pauses it, so no delivery starts from it. The engine stays pure:
//! the dispatcher reads the clock and sets the signal.

use std::net::IpAddr;

use sluice_shaping::Signal;
use tokio::time::Instant;

use super::Dispatcher;
use crate::leases::Held;

impl Dispatcher {
    /// Takes the keeper's latest view of the held leases.
    pub(super) fn apply_leases(&mut self, held: Held) {
        if held.keys().ne(self.leases.keys()) {
            tracing::info!(node = %self.cfg.node, held = ?held.iter().map(|(ip, l)| (ip, l.epoch)).collect::<Vec<_>>(), "leased IPs changed");
        }
        let old = std::mem::replace(&mut self.leases, held);
        self.sync_ip_states(&old);
        self.gate_ips();
    }

    /// Drops leases past their deadline; called before every pump, so no
    /// delivery starts from an IP whose lease could have expired.
    pub(super) fn expire_leases(&mut self) {
        let now = Instant::now();
        if self.leases.values().all(|l| l.until > now) {
            return;
        }
        let old = self.leases.clone();
        self.leases.retain(|ip, lease| {
            let live = lease.until > now;
            if !live {
                tracing::warn!(%ip, epoch = lease.epoch, "lease deadline passed without renewal; the IP is no longer used");
            }
            live
        });
        self.sync_ip_states(&old);
        self.gate_ips();
    }

    /// The epoch of the lease on `ip`, 0 when not held.
    pub(super) fn lease_epoch(&self, ip: IpAddr) -> u64 {
        self.leases.get(&ip).map_or(0, |l| l.epoch)
    }

    /// Sets the engine's signal of `ip`: `Pause` when not leased (or its
    /// stored state is not loaded yet), otherwise the reputation signal.
    pub(super) fn gate_ip(&mut self, ip: IpAddr) {
        let usable = self
            .leases
            .get(&ip)
            .is_some_and(|l| self.ip_states.as_ref().is_none_or(|s| s.ready(ip, l.epoch)));
        let signal = if usable {
            self.ip_signals.get(&ip).copied().unwrap_or(Signal::Ok)
        } else {
            Signal::Pause
        };
        self.engine.set_signal(ip, signal);
    }

    pub(super) fn gate_ips(&mut self) {
        for ip in self.cfg.source_ips() {
            self.gate_ip(ip);
        }
        self.close_unleased_idle();
        let held = self.leases.len();
        self.stats.lock().expect("stats lock").leased_ips = held;
        self.metrics.leased_ips.set(held as i64);
    }

    /// Closes idle connections bound to IPs no longer held.
    fn close_unleased_idle(&mut self) {
        let mut gone = Vec::new();
        for (path, list) in self.idle.iter_mut() {
            if !self.leases.contains_key(&self.engine.path(*path).ip) {
                gone.append(list);
            }
        }
        for idle in gone {
            self.close(idle.conn, idle.live);
        }
    }
}
