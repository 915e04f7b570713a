//! Applying a configuration from control while running: the engine is
//! reconfigured in place (paths, connections and counters carry over), site
//! queues learn whether TLS is now required, sites whose policy changed
//! have their parked mail woken, and the lease gate follows the pool's new
//! IPs.

use super::{Dispatcher, fate_now};
use crate::control::ControlUpdate;
use crate::wake::Wake;

impl Dispatcher {
    /// Puts `update` in force; a configuration the engine refuses leaves
    /// the one in force unchanged.
    pub(super) fn apply_control(&mut self, update: ControlUpdate) {
        match self.engine.reconfigure(update.cfg.shaping.clone()) {
            Ok(summary) => tracing::info!(
                revision = update.revision,
                ?summary,
                "control configuration applied"
            ),
            Err(err) => {
                tracing::error!(
                    revision = update.revision, %err,
                    "control configuration refused by the shaping engine; the previous one stays in force. Fix the record in control with `sluice admin`"
                );
                return;
            }
        }
        self.cfg = update.cfg;
        self.wake(update.wakes);
        for site in &mut self.sites {
            site.require_tls = self.cfg.smtp.require_tls_sites.contains(&site.name);
        }
        if update.paused != self.control_paused {
            tracing::info!(paused = ?update.paused, "tenants paused in control");
        }
        self.control_paused = update.paused;
        self.gate_ips();
    }

    /// For each site whose policy changed since the last update: forgets
    /// the drain rate it measured (under the old limits) and tells the
    /// consumer to release its parked mail.
    fn wake(&mut self, wakes: Vec<Wake>) {
        for wake in wakes {
            if self.woken.get(&wake.site).is_some_and(|at| *at >= wake.at) {
                continue;
            }
            self.woken.insert(wake.site.clone(), wake.at);
            if let Some(site) = self.sites.iter_mut().find(|s| s.name == wake.site) {
                site.parking = Default::default();
            }
            // Mail parked before a change older than the longest hold has
            // come back already (a node starting finds such stamps).
            if fate_now().since(wake.at) > self.cfg.longest_hold() {
                continue;
            }
            tracing::info!(site = %wake.site, "the site's policy changed in control: its parked mail goes now");
            // Parked times are this node's clock, the stamp control's: a
            // node whose clock is behind must not wake mail it parks after
            // it learned of the change (it would wake it again and again).
            let at = wake.at.min(fate_now());
            if let Some(wakes) = &self.wakes {
                let _ = wakes.send(Wake { at, ..wake });
            }
        }
    }
}
