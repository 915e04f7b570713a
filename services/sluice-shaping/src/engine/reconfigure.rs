//! Applying a new configuration to a running engine.

use std::net::IpAddr;

use super::Engine;
use super::budget::Shape;
use crate::config::EngineConfig;
use crate::error::ConfigError;

/// What [`Engine::reconfigure`] changed, for logging.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Addresses new to the engine: each got a slot with fresh state and joined its pool.
    pub ips_added: Vec<IpAddr>,
    /// Addresses no longer configured: they left their pool, their slots and paths stay.
    pub ips_removed: Vec<IpAddr>,
    /// Addresses removed earlier that are configured again: they rejoined a pool with the
    /// state they had.
    pub ips_returned: Vec<IpAddr>,
    /// Addresses that moved from one pool to another.
    pub ips_moved: Vec<IpAddr>,
    /// Addresses whose warm-up plan (by name) changed, including to none.
    pub plans_changed: Vec<IpAddr>,
    /// Names of warm-up plans added, redefined or removed.
    pub plans_redefined: Vec<String>,
    /// Existing paths whose effective limits changed.
    pub paths_reshaped: usize,
}

impl Engine {
    /// Applies `cfg` to the running engine in place. `PathId`s, `SiteKey`s, `PoolKey`s and
    /// open [`super::Connection`]s stay valid, and all state (counters, adaptive rates,
    /// suspensions, signals, warm-up progress) is kept.
    ///
    /// `cfg` is first compiled as by [`Engine::new`]; an invalid configuration is returned
    /// as the error and changes nothing. `sites`, `retry`, `replies` and `backoff` cannot
    /// change while running: a difference there is an error naming the field (restart the
    /// node for those).
    ///
    /// - A new address gets a slot and joins its pool. A removed address leaves its pool,
    ///   so [`Engine::decide`] no longer picks it, but its slot and paths stay: connections
    ///   on them close and report outcomes as before, and [`Engine::path_for`] still
    ///   answers for it. An address that comes back rejoins its (new) pool with its state.
    ///   A pool change moves the address; new pools are interned, existing `PoolKey`s keep
    ///   their meaning.
    /// - Each address's warm-up plan is looked up by name in the new plans; the plan of a
    ///   removed address that no longer exists means warm (no plan).
    /// - Every existing path and provider slot takes its new limits (a provider whose limits
    ///   were removed becomes unlimited; paths of a provider that gained limits join a
    ///   provider slot with their counts). A rate limit that now allows less than before
    ///   also counts the sends made under the old one until they left its window, so no
    ///   sliding window holds more than the limit in force. Open connections keep the
    ///   per-connection limits they were opened with.
    pub fn reconfigure(&mut self, cfg: EngineConfig) -> Result<Reconfigured, ConfigError> {
        let compiled = Engine::new(cfg.clone())?;
        let fixed = [
            ("sites", cfg.sites == self.cfg.sites),
            ("retry", cfg.retry == self.cfg.retry),
            ("replies", cfg.replies == self.cfg.replies),
            ("backoff", cfg.backoff == self.cfg.backoff),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, same)| !same) {
            return Err(ConfigError::new(
                *field,
                "cannot change while running; restart the node",
            ));
        }
        let mut out = Reconfigured::default();
        self.apply_plans(&cfg, compiled, &mut out);
        self.apply_ips(&cfg, &mut out);
        self.cfg = cfg;
        self.apply_limits(&mut out);
        Ok(out)
    }

    /// New plan list and each slot's plan index by name.
    fn apply_plans(&mut self, cfg: &EngineConfig, compiled: Engine, out: &mut Reconfigured) {
        let old = self.cfg.warmup.all_plans();
        let new = cfg.warmup.all_plans();
        let old_names: Vec<&String> = old.keys().collect();
        let new_names: Vec<&String> = new.keys().collect();
        let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
        names.sort();
        names.dedup();
        out.plans_redefined = names
            .into_iter()
            .filter(|n| old.get(*n) != new.get(*n))
            .cloned()
            .collect();
        for slot in &mut self.ips {
            let was = slot.plan.map(|i| old_names[i as usize]);
            let name = match cfg.ips.iter().find(|c| c.address == slot.addr) {
                Some(c) => c.warmup_plan.as_ref(),
                None => was,
            };
            let plan = name.and_then(|n| new_names.iter().position(|m| *m == n));
            if plan.map(|i| new_names[i]) != was {
                out.plans_changed.push(slot.addr);
            }
            slot.plan = plan.map(|i| i as u32);
        }
        self.plans = compiled.plans;
    }

    /// Pool membership: added, removed, returned and moved addresses.
    fn apply_ips(&mut self, cfg: &EngineConfig, out: &mut Reconfigured) {
        for i in 0..self.ips.len() {
            let (addr, old_pool) = (self.ips[i].addr, self.ips[i].pool);
            let idx = i as u32;
            let member = self.pools[old_pool as usize].contains(&idx);
            let Some(c) = cfg.ips.iter().find(|c| c.address == addr) else {
                if member {
                    self.pools[old_pool as usize].retain(|&m| m != idx);
                    out.ips_removed.push(addr);
                }
                continue;
            };
            let pool = self.intern_pool(&c.pool);
            if pool == old_pool && member {
                continue;
            }
            if member {
                self.pools[old_pool as usize].retain(|&m| m != idx);
                out.ips_moved.push(addr);
            } else {
                out.ips_returned.push(addr);
            }
            self.ips[i].pool = pool;
            self.pools[pool as usize].push(idx);
        }
        let plans = cfg.warmup.all_plans();
        for c in &cfg.ips {
            if self.ips.iter().all(|s| s.addr != c.address) {
                let plan = c
                    .warmup_plan
                    .as_ref()
                    .and_then(|n| plans.keys().position(|m| m == n))
                    .map(|i| i as u32);
                self.add_ip(c.address, &c.pool, plan);
                out.ips_added.push(c.address);
            }
        }
    }

    /// New limits for every existing path and provider slot (from `self.cfg`).
    fn apply_limits(&mut self, out: &mut Reconfigured) {
        for i in 0..self.paths.len() {
            let (ip, site) = (self.paths[i].ip, self.paths[i].site as usize);
            let addr = self.ips[ip as usize].addr;
            let shape = Shape::new(self.cfg.limits.for_path(addr, &self.sites[site].name));
            let p = &mut self.paths[i];
            if shape.limits != p.shape.limits {
                out.paths_reshaped += 1;
            }
            p.shape.reshape(shape, &mut p.state.counters);
            p.shape = shape;
            if p.provider.is_some() {
                continue;
            }
            let Some(name) = self.sites[site].provider.clone() else {
                continue;
            };
            if let Some(v) = self.provider_slot(ip, name) {
                let p = &mut self.paths[i];
                p.provider = Some(v);
                let slot = &mut self.providers[v as usize];
                slot.counters.absorb(&p.state.counters);
                slot.open += p.open;
            }
        }
        for ((_, name), &i) in &self.provider_index {
            let limits = self.cfg.limits.for_provider(name).unwrap_or_default();
            let shape = Shape::new(limits);
            let v = &mut self.providers[i as usize];
            v.shape.reshape(shape, &mut v.counters);
            v.shape = shape;
        }
    }
}
