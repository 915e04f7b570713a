//! Per-IP, per-path and per-provider slots and their creation.

use std::net::IpAddr;

use super::budget::{Counters, Shape};
use super::{Engine, IpState, NO_PATH, PathState};
use crate::warmup::Signal;

#[derive(Clone, Debug)]
pub(crate) struct IpSlot {
    pub addr: IpAddr,
    pub pool: u32,
    pub plan: Option<u32>,
    pub state: IpState,
}

#[derive(Clone, Debug)]
pub(crate) struct PathSlot {
    pub ip: u32,
    pub site: u32,
    pub provider: Option<u32>,
    pub shape: Shape,
    pub open: u32,
    pub state: PathState,
    /// Reputation signal toward this site only (see [`Engine::set_site_signal`]).
    pub signal: Signal,
}

#[derive(Clone, Debug)]
pub(crate) struct ProviderSlot {
    pub shape: Shape,
    pub open: u32,
    pub counters: Counters,
}

impl Engine {
    /// Index of the pool named `pool`, interned on first use.
    pub(super) fn intern_pool(&mut self, pool: &str) -> u32 {
        match self.pool_index.get(pool) {
            Some(&p) => p,
            None => {
                let p = self.pools.len() as u32;
                self.pool_names.push(pool.to_owned());
                self.pool_index.insert(pool.to_owned(), p);
                self.pools.push(Vec::new());
                p
            }
        }
    }

    pub(super) fn add_ip(&mut self, addr: IpAddr, pool: &str, plan: Option<u32>) {
        let pool = self.intern_pool(pool);
        let index = self.ips.len() as u32;
        self.pools[pool as usize].push(index);
        self.ips.push(IpSlot {
            addr,
            pool,
            plan,
            state: IpState::default(),
        });
        for row in &mut self.site_paths {
            row.push(NO_PATH);
        }
    }

    /// Index of the path (ip, site), created on first use.
    pub(super) fn path_index(&mut self, ip: u32, site: u32) -> u32 {
        let existing = self.site_paths[site as usize][ip as usize];
        if existing != NO_PATH {
            return existing;
        }
        let addr = self.ips[ip as usize].addr;
        let site_ref = &self.sites[site as usize];
        let limits = self.cfg.limits.for_path(addr, &site_ref.name);
        let provider = site_ref
            .provider
            .clone()
            .and_then(|p| self.provider_slot(ip, p));
        let index = self.paths.len() as u32;
        let signal = self.site_signal(addr, site);
        self.paths.push(PathSlot {
            ip,
            site,
            provider,
            shape: Shape::new(limits),
            open: 0,
            state: PathState::default(),
            signal,
        });
        self.site_paths[site as usize][ip as usize] = index;
        index
    }

    /// The reputation signal set for (IP, site), `Ok` when none.
    fn site_signal(&self, addr: IpAddr, site: u32) -> Signal {
        let name = self.sites[site as usize].name.clone();
        self.site_signals
            .get(&(addr, name))
            .copied()
            .unwrap_or_default()
    }

    /// Index of the provider-wide slot of (ip, provider), if the provider has limits.
    pub(super) fn provider_slot(&mut self, ip: u32, provider: String) -> Option<u32> {
        let limits = self.cfg.limits.for_provider(&provider)?;
        let next = self.providers.len() as u32;
        let index = *self.provider_index.entry((ip, provider)).or_insert(next);
        if index == next {
            self.providers.push(ProviderSlot {
                shape: Shape::new(limits),
                open: 0,
                counters: Counters::default(),
            });
        }
        Some(index)
    }
}
