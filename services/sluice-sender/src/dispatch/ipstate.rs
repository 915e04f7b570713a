//! Moving each IP's shaping state with its lease (docs/leases.md, "What
//! moves with the lease"). When the keeper reports a lease at a new epoch,
//! the IP stays gated until its stored state is claimed and absorbed into
//! the engine; a failed load is retried and the IP stays gated meanwhile.
//! While the IP is held its state is written every `state.interval`, and
//! once more when the dispatcher stops using it (release, lost lease, drain).
//! At most one write per IP is in flight, so they land in order.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use sluice_shaping::Snapshot;
use tokio::task::JoinSet;

use super::Dispatcher;
use crate::leases::{AnyIpStates, Claim, Held, IpStates};

/// How long a failed claim waits before the next try.
const RETRY: Duration = Duration::from_secs(1);

/// The dispatcher's side of the per-IP state store.
pub(super) struct IpStateSync {
    store: AnyIpStates,
    /// Bound of one store call (the lease margin).
    timeout: Duration,
    /// The epoch whose stored state the engine holds, per IP.
    absorbed: HashMap<IpAddr, u64>,
    /// Claims in progress, by (IP, epoch).
    loading: HashMap<IpAddr, u64>,
    loads: JoinSet<(IpAddr, u64, Result<Claim, String>)>,
    /// IPs with a write in flight, and the write to make after it.
    saving: HashMap<IpAddr, Option<(u64, Snapshot)>>,
    saves: JoinSet<IpAddr>,
}

impl IpStateSync {
    pub(super) fn new(store: AnyIpStates, timeout: Duration) -> Self {
        Self {
            store,
            timeout,
            absorbed: HashMap::new(),
            loading: HashMap::new(),
            loads: JoinSet::new(),
            saving: HashMap::new(),
            saves: JoinSet::new(),
        }
    }

    /// Whether the engine holds the stored state of `ip` at `epoch`.
    pub(super) fn ready(&self, ip: IpAddr, epoch: u64) -> bool {
        self.absorbed.get(&ip) == Some(&epoch)
    }

    fn load(&mut self, ip: IpAddr, epoch: u64, node: &str, delay: Duration) {
        self.loading.insert(ip, epoch);
        let (store, node, timeout) = (self.store.clone(), node.to_owned(), self.timeout);
        self.loads.spawn(async move {
            tokio::time::sleep(delay).await;
            let claim = store.claim(ip, &node, epoch, SystemTime::now());
            let result = match tokio::time::timeout(timeout, claim).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            (ip, epoch, result)
        });
    }

    fn save(&mut self, ip: IpAddr, epoch: u64, state: Snapshot, node: &str) {
        if let Some(next) = self.saving.get_mut(&ip) {
            *next = Some((epoch, state));
            return;
        }
        self.saving.insert(ip, None);
        let (store, node, timeout) = (self.store.clone(), node.to_owned(), self.timeout);
        self.saves.spawn(async move {
            let save = store.save(ip, &node, epoch, &state, SystemTime::now());
            match tokio::time::timeout(timeout, save).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => tracing::warn!(%ip, epoch, "IP state write refused: a later lease epoch holds the IP"),
                Ok(Err(e)) => tracing::warn!(%ip, epoch, error = %e, "IP state write failed; the next one carries the state"),
                Err(_) => tracing::warn!(%ip, epoch, "IP state write got no answer within {timeout:?}"),
            }
            ip
        });
    }

    pub(super) fn busy(&self) -> bool {
        !self.loads.is_empty() || !self.saves.is_empty()
    }
}

impl Dispatcher {
    /// Before the held set changes from `old`: the state of every IP that is
    /// no longer held at its epoch is written a last time, and claims start
    /// for IPs held at an epoch whose state is not loaded yet.
    pub(super) fn sync_ip_states(&mut self, old: &Held) {
        let node = self.cfg.node.clone();
        let Some(sync) = self.ip_states.as_mut() else {
            return;
        };
        for (ip, lease) in old {
            let still = self.leases.get(ip).map(|l| l.epoch) == Some(lease.epoch);
            if !still && sync.absorbed.get(ip) == Some(&lease.epoch) {
                sync.absorbed.remove(ip);
                if let Some(state) = self.engine.ip_snapshot(*ip) {
                    tracing::info!(%ip, epoch = lease.epoch, "writing the IP's state as it leaves this node");
                    sync.save(*ip, lease.epoch, state, &node);
                }
            }
        }
        for (ip, lease) in &self.leases {
            if !sync.ready(*ip, lease.epoch) && sync.loading.get(ip) != Some(&lease.epoch) {
                sync.load(*ip, lease.epoch, &node, Duration::ZERO);
            }
        }
    }

    /// A claim finished: absorb the state if the lease is still held at that
    /// epoch, or retry.
    pub(super) fn ip_state_loaded(
        &mut self,
        ip: IpAddr,
        epoch: u64,
        result: Result<Claim, String>,
    ) {
        let node = self.cfg.node.clone();
        let Some(sync) = self.ip_states.as_mut() else {
            return;
        };
        if sync.loading.get(&ip) == Some(&epoch) {
            sync.loading.remove(&ip);
        }
        let held = self.leases.get(&ip).map(|l| l.epoch) == Some(epoch);
        if !held {
            return;
        }
        match result {
            Ok(Claim::Claimed(Some(state))) => {
                let absorbed = self.engine.absorb_ip(&state);
                let day = self.engine.ip_state(ip).map(|s| s.warmup.day());
                tracing::info!(%ip, epoch, absorbed, warmup_day = ?day, "IP state loaded from the lease store");
                sync.absorbed.insert(ip, epoch);
            }
            Ok(Claim::Claimed(None)) => {
                tracing::info!(%ip, epoch, "no stored IP state: going on from this node's own");
                sync.absorbed.insert(ip, epoch);
            }
            Ok(Claim::Newer(newer)) => {
                tracing::warn!(%ip, epoch, newer, "the IP's state belongs to a later lease epoch; the IP stays unused");
                sync.load(ip, epoch, &node, RETRY);
            }
            Err(e) => {
                tracing::warn!(%ip, epoch, error = %e, "loading the IP's state failed; the IP stays unused, retrying");
                sync.load(ip, epoch, &node, RETRY);
            }
        }
        self.gate_ip(ip);
    }

    /// A write finished: start the one queued behind it.
    pub(super) fn ip_state_saved(&mut self, ip: IpAddr) {
        let node = self.cfg.node.clone();
        let Some(sync) = self.ip_states.as_mut() else {
            return;
        };
        if let Some(Some((epoch, state))) = sync.saving.remove(&ip) {
            sync.save(ip, epoch, state, &node);
        }
    }

    /// Writes the state of every IP held and loaded (every `state.interval`).
    pub(super) fn save_ip_states(&mut self) {
        let node = self.cfg.node.clone();
        let Some(sync) = self.ip_states.as_mut() else {
            return;
        };
        for (ip, lease) in &self.leases {
            if sync.ready(*ip, lease.epoch)
                && let Some(state) = self.engine.ip_snapshot(*ip)
            {
                sync.save(*ip, lease.epoch, state, &node);
            }
        }
    }

    pub(super) fn on_ip_state_event(&mut self, event: IpStateEvent) {
        match event {
            IpStateEvent::Loaded(ip, epoch, result) => self.ip_state_loaded(ip, epoch, result),
            IpStateEvent::Saved(ip) => self.ip_state_saved(ip),
            IpStateEvent::Nothing => {}
        }
    }

    /// On drain: writes the state of every held IP a last time and waits for
    /// the writes (each bounded by the lease margin).
    pub(super) async fn flush_ip_states(&mut self) {
        self.save_ip_states();
        let Some(sync) = self.ip_states.as_mut() else {
            return;
        };
        sync.loads.abort_all();
        while let Some(done) = sync.saves.join_next().await {
            let Ok(ip) = done else { continue };
            let node = self.cfg.node.clone();
            if let Some(Some((epoch, state))) = sync.saving.remove(&ip) {
                sync.save(ip, epoch, state, &node);
            }
        }
    }
}

/// Waits for the next claim or write of `sync` to finish; pending forever
/// when none is in flight (a free function, so the dispatcher's other fields
/// stay borrowable in its `select!`).
pub(super) async fn next_event(sync: &mut Option<IpStateSync>) -> IpStateEvent {
    let Some(sync) = sync.as_mut() else {
        return std::future::pending().await;
    };
    if !sync.busy() {
        return std::future::pending().await;
    }
    tokio::select! {
        Some(Ok((ip, epoch, result))) = sync.loads.join_next(), if !sync.loads.is_empty() => IpStateEvent::Loaded(ip, epoch, result),
        Some(Ok(ip)) = sync.saves.join_next(), if !sync.saves.is_empty() => IpStateEvent::Saved(ip),
        else => IpStateEvent::Nothing,
    }
}

/// What a claim or write task reported.
pub(super) enum IpStateEvent {
    Loaded(IpAddr, u64, Result<Claim, String>),
    Saved(IpAddr),
    Nothing,
}
