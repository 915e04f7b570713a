//! The engine: configuration plus state, driven by the caller with time as an argument.

mod budget;
mod connection;
mod decide;
mod outcome;
mod reconfigure;
mod slots;
mod snapshot;

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::backoff::Aimd;
use crate::classify::Classifier;
use crate::config::EngineConfig;
use crate::error::ConfigError;
use crate::limits::Limits;
use crate::reply::ReplyRules;
use crate::retry::RetrySchedule;
use crate::site::{Site, SiteResolver};
use crate::time::Millis;
use crate::warmup::{Signal, WarmupPlan, WarmupState};

pub use budget::Counters;
pub use connection::Connection;
pub use outcome::{Action, PathEffect, Verdict};
pub use reconfigure::Reconfigured;
use slots::{IpSlot, PathSlot, ProviderSlot};
pub use snapshot::{IpRecord, PathRecord, ProviderRecord, Snapshot};

/// A pool, interned by [`Engine::pool_key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey(u32);

/// A site, interned by [`Engine::site_key`]. Valid for the life of the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SiteKey(u32);

/// An egress path (pool, source IP, site) of this engine. Not stable across restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PathId(u32);

/// Permission to send one message: from which IP, on which path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The path to deliver on (and to report outcomes for).
    pub path: PathId,
    /// The source IP to send from.
    pub ip: IpAddr,
}

/// Why nothing can go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// Limits allow the next one at this time at the earliest.
    Until(Millis),
    /// Every allowed connection is open; try again when one closes.
    Busy,
    /// Nothing can go until something outside the engine changes: the pool has no IPs, or
    /// every IP is paused by its reputation signal.
    Held,
}

/// The result of [`Engine::decide`].
pub type Decision = Result<Grant, Blocked>;

/// A read-only view of a path, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathView<'a> {
    /// The source IP.
    pub ip: IpAddr,
    /// The pool of the IP.
    pub pool: &'a str,
    /// The site.
    pub site: &'a Site,
    /// Effective limits (ceilings, before adaptive slowing).
    pub limits: Limits,
    /// Current rate in permille of the ceiling.
    pub rate_permille: u16,
    /// Suspended until (a time in the past when not suspended).
    pub suspended_until: Millis,
    /// Open connections.
    pub open_connections: u32,
}

/// Serializable state of one source IP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpState {
    /// The IP sends nothing before this time.
    pub suspended_until: Millis,
    /// The current reputation signal.
    pub signal: Signal,
    /// Warm-up progress.
    pub warmup: WarmupState,
}

/// Serializable state of one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathState {
    /// Rate and count state.
    pub counters: Counters,
    /// Adaptive rate.
    pub aimd: Aimd,
    /// The path sends nothing before this time.
    pub suspended_until: Millis,
}

/// The shaping engine of one sender node.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    resolver: SiteResolver,
    replies: ReplyRules,
    classifier: Classifier,
    retry: RetrySchedule,
    plans: Vec<WarmupPlan>,
    pool_names: Vec<String>,
    pool_index: HashMap<String, u32>,
    pools: Vec<Vec<u32>>,
    ips: Vec<IpSlot>,
    sites: Vec<Site>,
    site_index: HashMap<Site, u32>,
    /// `site_paths[site][ip]` is the path index, or `NO_PATH`.
    site_paths: Vec<Vec<u32>>,
    paths: Vec<PathSlot>,
    provider_index: HashMap<(u32, String), u32>,
    providers: Vec<ProviderSlot>,
    generation: u64,
    next_connection: u64,
    scratch: Vec<decide::Candidate>,
    /// Reputation signals per (source IP, site name), applied to paths as they
    /// are created and kept for paths created later.
    site_signals: HashMap<(IpAddr, String), Signal>,
}

const NO_PATH: u32 = u32::MAX;

impl Engine {
    /// Validates and compiles `cfg` into an engine with fresh state.
    pub fn new(cfg: EngineConfig) -> Result<Engine, ConfigError> {
        cfg.backoff.validate()?;
        let plan_map = cfg.warmup.all_plans();
        let plan_names: Vec<&String> = plan_map.keys().collect();
        let mut engine = Engine {
            resolver: SiteResolver::new(&cfg.sites)?,
            replies: ReplyRules::new(&cfg.replies)?,
            classifier: Classifier::default(),
            retry: RetrySchedule::new(&cfg.retry)?,
            plans: plan_map.values().cloned().collect(),
            pool_names: Vec::new(),
            pool_index: HashMap::new(),
            pools: Vec::new(),
            ips: Vec::new(),
            sites: Vec::new(),
            site_index: HashMap::new(),
            site_paths: Vec::new(),
            paths: Vec::new(),
            provider_index: HashMap::new(),
            providers: Vec::new(),
            generation: 0,
            next_connection: 0,
            scratch: Vec::new(),
            site_signals: HashMap::new(),
            cfg: cfg.clone(),
        };
        for (i, ip) in cfg.ips.iter().enumerate() {
            let plan = match &ip.warmup_plan {
                None => None,
                Some(name) => Some(plan_names.iter().position(|n| *n == name).ok_or_else(|| {
                    ConfigError::new(
                        format!("ips[{i}].warmup_plan"),
                        format!("no warm-up plan named `{name}`"),
                    )
                })? as u32),
            };
            if engine.ips.iter().any(|s| s.addr == ip.address) {
                return Err(ConfigError::new(
                    format!("ips[{i}].address"),
                    format!("{} is listed twice", ip.address),
                ));
            }
            engine.add_ip(ip.address, &ip.pool, plan);
        }
        Ok(engine)
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The MX rollup resolver.
    pub fn sites(&self) -> &SiteResolver {
        &self.resolver
    }

    /// The retry schedule.
    pub fn retry(&self) -> &RetrySchedule {
        &self.retry
    }

    /// The classifier used for replies.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The key of a configured pool.
    pub fn pool_key(&self, pool: &str) -> Option<PoolKey> {
        self.pool_index.get(pool).map(|&i| PoolKey(i))
    }

    /// The key of `pool`, interned now when no IP of it is configured yet:
    /// its mail is held ([`Blocked::Held`]) until [`Engine::reconfigure`]
    /// adds one, and the key stays valid across reconfigurations.
    pub fn pool_key_or_new(&mut self, pool: &str) -> PoolKey {
        PoolKey(self.intern_pool(pool))
    }

    /// Interns a site (the same site always gets the same key).
    pub fn site_key(&mut self, site: &Site) -> SiteKey {
        if let Some(&i) = self.site_index.get(site) {
            return SiteKey(i);
        }
        let i = self.sites.len() as u32;
        self.sites.push(site.clone());
        self.site_index.insert(site.clone(), i);
        self.site_paths.push(vec![NO_PATH; self.ips.len()]);
        SiteKey(i)
    }

    /// Sets the reputation signal of a source IP; false if the IP is not configured.
    pub fn set_signal(&mut self, ip: IpAddr, signal: Signal) -> bool {
        match self.ips.iter_mut().find(|s| s.addr == ip) {
            Some(slot) => {
                slot.state.signal = signal;
                true
            }
            None => false,
        }
    }

    /// Sets the reputation signal of one source IP toward one site (by site
    /// name): `Pause` stops the path, `Slow` halves its rate, `Ok` clears it.
    /// `HoldDay` concerns the IP's warm-up and is only meaningful through
    /// [`Engine::set_signal`]; here it is stored but has no effect. False if
    /// the IP is not configured.
    pub fn set_site_signal(&mut self, ip: IpAddr, site: &str, signal: Signal) -> bool {
        let Some(i) = self.ips.iter().position(|s| s.addr == ip) else {
            return false;
        };
        if signal == Signal::Ok {
            self.site_signals.remove(&(ip, site.to_owned()));
        } else {
            self.site_signals.insert((ip, site.to_owned()), signal);
        }
        for p in self.paths.iter_mut().filter(|p| p.ip as usize == i) {
            if self.sites[p.site as usize].name == site {
                p.signal = signal;
            }
        }
        true
    }

    /// State of a source IP.
    pub fn ip_state(&self, ip: IpAddr) -> Option<&IpState> {
        self.ips.iter().find(|s| s.addr == ip).map(|s| &s.state)
    }

    /// A view of one path.
    pub fn path(&self, path: PathId) -> PathView<'_> {
        let p = &self.paths[path.0 as usize];
        let ip = &self.ips[p.ip as usize];
        PathView {
            ip: ip.addr,
            pool: &self.pool_names[ip.pool as usize],
            site: &self.sites[p.site as usize],
            limits: p.shape.limits,
            rate_permille: p.state.aimd.permille(),
            suspended_until: p.state.suspended_until,
            open_connections: p.open,
        }
    }

    /// The path for (IP, site), created on first use; `None` if the IP is not configured.
    pub fn path_for(&mut self, ip: IpAddr, site: SiteKey) -> Option<PathId> {
        let i = self.ips.iter().position(|s| s.addr == ip)?;
        Some(PathId(self.path_index(i as u32, site.0)))
    }
}
