//! Persisting and restoring engine state.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::budget::Counters;
use super::{Engine, IpState, PathState};
use crate::config::EngineConfig;
use crate::error::ConfigError;
use crate::site::Site;

/// State of one IP in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRecord {
    /// The source IP.
    pub address: IpAddr,
    /// Its state.
    pub state: IpState,
}

/// State of one path in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRecord {
    /// The source IP.
    pub ip: IpAddr,
    /// The site.
    pub site: Site,
    /// Its state.
    pub state: PathState,
}

/// Provider-wide counters of one IP in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// The source IP.
    pub ip: IpAddr,
    /// The provider.
    pub provider: String,
    /// Its counters.
    pub counters: Counters,
}

/// Everything that must survive a restart: counters, adaptive rates, suspensions, signals
/// and warm-up progress. Open connections are not in it: they do not survive a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Restore count of the engine that took the snapshot.
    pub generation: u64,
    /// Per-IP state.
    pub ips: Vec<IpRecord>,
    /// Per-path state.
    pub paths: Vec<PathRecord>,
    /// Provider-wide counters.
    pub providers: Vec<ProviderRecord>,
}

impl Engine {
    /// The persistent state, keyed by IP address, site and provider names.
    pub fn snapshot(&self) -> Snapshot {
        let ips = self
            .ips
            .iter()
            .map(|s| IpRecord {
                address: s.addr,
                state: s.state,
            })
            .collect();
        let paths = self
            .paths
            .iter()
            .map(|p| PathRecord {
                ip: self.ips[p.ip as usize].addr,
                site: self.sites[p.site as usize].clone(),
                state: p.state,
            })
            .collect();
        let providers = self
            .provider_index
            .iter()
            .map(|((ip, name), &i)| ProviderRecord {
                ip: self.ips[*ip as usize].addr,
                provider: name.clone(),
                counters: self.providers[i as usize].counters,
            })
            .collect();
        Snapshot {
            generation: self.generation,
            ips,
            paths,
            providers,
        }
    }

    /// An engine for `cfg` carrying over the state in `snap`. State of IPs no longer in the
    /// configuration is dropped; paths get the limits of the new configuration.
    pub fn restore(cfg: EngineConfig, snap: &Snapshot) -> Result<Engine, ConfigError> {
        let mut engine = Engine::new(cfg)?;
        engine.generation = snap.generation + 1;
        for r in &snap.ips {
            if let Some(slot) = engine.ips.iter_mut().find(|s| s.addr == r.address) {
                slot.state = r.state;
            }
        }
        for r in &snap.paths {
            let site = engine.site_key(&r.site);
            if let Some(path) = engine.path_for(r.ip, site) {
                engine.paths[path.0 as usize].state = r.state;
            }
        }
        for r in &snap.providers {
            let Some(ip) = engine.ips.iter().position(|s| s.addr == r.ip) else {
                continue;
            };
            if let Some(i) = engine.provider_slot(ip as u32, r.provider.clone()) {
                engine.providers[i as usize].counters = r.counters;
            }
        }
        Ok(engine)
    }
}
