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

impl Engine {
    /// The persistent state of one source IP alone: its [`IpRecord`], and the
    /// [`PathRecord`]s and [`ProviderRecord`]s of that IP. `None` when the IP
    /// is not configured. What a node hands to the next owner of the IP.
    pub fn ip_snapshot(&self, ip: IpAddr) -> Option<Snapshot> {
        let i = self.ips.iter().position(|s| s.addr == ip)?;
        let ips = vec![IpRecord {
            address: ip,
            state: self.ips[i].state,
        }];
        let paths = self
            .paths
            .iter()
            .filter(|p| p.ip as usize == i)
            .map(|p| PathRecord {
                ip,
                site: self.sites[p.site as usize].clone(),
                state: p.state,
            })
            .collect();
        let mut providers: Vec<ProviderRecord> = self
            .provider_index
            .iter()
            .filter(|((owner, _), _)| *owner as usize == i)
            .map(|((_, name), &slot)| ProviderRecord {
                ip,
                provider: name.clone(),
                counters: self.providers[slot as usize].counters,
            })
            .collect();
        providers.sort_by(|a, b| a.provider.cmp(&b.provider));
        Some(Snapshot {
            generation: self.generation,
            ips,
            paths,
            providers,
        })
    }

    /// Replaces the persistent state of the IPs of `part` (usually one, from
    /// [`Engine::ip_snapshot`] of another engine) with the state in it: the
    /// IP's suspension and warm-up progress, and the counters, adaptive rates
    /// and suspensions of every path and provider of that IP. Paths and
    /// providers of the IP that `part` does not name start fresh; paths it
    /// names are created here if needed. Other IPs are untouched.
    ///
    /// What is live in this engine stays: open connection counts (so every
    /// [`Connection`](super::Connection) and [`PathId`](super::PathId) the
    /// caller holds stays valid and is counted), the IP's reputation signal
    /// and the per-site signals (the caller sets those from what it knows
    /// now). False when no IP of `part` is configured here.
    pub fn absorb_ip(&mut self, part: &Snapshot) -> bool {
        let mut absorbed = false;
        for r in &part.ips {
            let Some(i) = self.ips.iter().position(|s| s.addr == r.address) else {
                continue;
            };
            absorbed = true;
            let slot = &mut self.ips[i];
            slot.state = IpState {
                signal: slot.state.signal,
                ..r.state
            };
            for p in self.paths.iter_mut().filter(|p| p.ip as usize == i) {
                p.state = PathState::default();
            }
            for (_, &v) in self
                .provider_index
                .iter()
                .filter(|((o, _), _)| *o as usize == i)
            {
                self.providers[v as usize].counters = Counters::default();
            }
            for p in part.paths.iter().filter(|p| p.ip == r.address) {
                let site = self.site_key(&p.site);
                if let Some(path) = self.path_for(p.ip, site) {
                    self.paths[path.0 as usize].state = p.state;
                }
            }
            for v in part.providers.iter().filter(|v| v.ip == r.address) {
                if let Some(slot) = self.provider_slot(i as u32, v.provider.clone()) {
                    self.providers[slot as usize].counters = v.counters;
                }
            }
        }
        absorbed
    }
}
