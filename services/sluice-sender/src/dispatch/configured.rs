//! Applying a configuration from control while running: the engine is
//! reconfigured in place (paths, connections and counters carry over), site
//! queues learn whether TLS is now required, and the lease gate follows the
//! pool's new IPs.

use super::Dispatcher;
use crate::control::ControlUpdate;

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
        for site in &mut self.sites {
            site.require_tls = self.cfg.smtp.require_tls_sites.contains(&site.name);
        }
        if update.paused != self.control_paused {
            tracing::info!(paused = ?update.paused, "tenants paused in control");
        }
        self.control_paused = update.paused;
        self.gate_ips();
    }
}
