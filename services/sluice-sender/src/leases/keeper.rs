//! The loop that holds a node's fair share of its pool's IPs and tells the
//! dispatcher which ones it may use, and until when.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Leases, LeasesSection, fair_share, preference};
use crate::SenderError;

/// A lease this node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease {
    /// The lease's epoch (in every event of a delivery from the IP).
    pub epoch: u64,
    /// The node must not start a delivery from the IP at or after this
    /// instant: `ttl - margin` after the last successful take or renewal was
    /// sent.
    pub until: Instant,
}

/// The IPs a node may use now.
pub type Held = BTreeMap<IpAddr, HeldLease>;

/// One node's lease keeping.
pub struct Keeper<L> {
    leases: L,
    node: String,
    ips: Vec<IpAddr>,
    ttl: Duration,
    margin: Duration,
    held: Held,
    live: usize,
    /// Where the held set goes (the dispatcher); `None` in tests.
    tx: Option<UnboundedSender<Held>>,
    /// Whether this host can send from an IP (only those are taken).
    usable: fn(IpAddr) -> bool,
}

impl<L: Leases> Keeper<L> {
    pub fn new(leases: L, node: &str, ips: &[IpAddr], cfg: &LeasesSection) -> Self {
        Self {
            leases,
            node: node.to_owned(),
            ips: preference(ips, node),
            ttl: cfg.ttl.into(),
            margin: cfg.margin.into(),
            held: Held::new(),
            live: 1,
            tx: None,
            usable: |_| true,
        }
    }

    /// Takes only the IPs `usable` accepts (the sender: those its host can
    /// bind, [`super::can_send_from`]); the fair share still counts the
    /// whole pool, so hosts carrying different addresses each take theirs.
    pub fn only_from(mut self, usable: fn(IpAddr) -> bool) -> Self {
        self.usable = usable;
        self
    }

    /// Sends the held set to `tx` after every change that takes IPs away
    /// (before the store hears of it) and after every round.
    pub fn reporting_to(mut self, tx: UnboundedSender<Held>) -> Self {
        self.tx = Some(tx);
        self
    }

    /// Tells the dispatcher what is held now; false when it is gone.
    fn report(&self) -> bool {
        self.tx
            .as_ref()
            .is_none_or(|tx| tx.send(self.held.clone()).is_ok())
    }

    /// What the node holds after the last round.
    pub fn held(&self) -> &Held {
        &self.held
    }

    /// Bounds one store call: a call that hangs must not keep a lease in
    /// use past its deadline (the dispatcher enforces `until` anyway).
    async fn call<T>(
        &self,
        f: impl Future<Output = Result<T, SenderError>>,
    ) -> Result<T, SenderError> {
        match tokio::time::timeout(self.margin, f).await {
            Ok(result) => result,
            Err(_) => Err(SenderError::Leases(format!(
                "no answer within {:?}",
                self.margin
            ))),
        }
    }

    /// One round: heartbeat, count live nodes, renew what is held, release
    /// what is beyond the fair share, take free IPs up to it.
    pub async fn round(&mut self) {
        let now = SystemTime::now();
        if let Err(e) = self
            .call(self.leases.heartbeat(&self.node, now, self.ttl))
            .await
        {
            tracing::warn!(node = %self.node, error = %e, "lease heartbeat failed");
        }
        match self.call(self.leases.live_nodes()).await {
            Ok(nodes) => self.live = nodes.len() + usize::from(!nodes.contains(&self.node)),
            Err(e) => {
                tracing::warn!(error = %e, live = self.live, "cannot count live nodes; keeping the last count")
            }
        }
        self.renew_all().await;
        let share = fair_share(self.ips.len(), self.live);
        self.release_extras(share, self.margin).await;
        self.take_up_to(share).await;
    }

    async fn renew_all(&mut self) {
        let held: Vec<(IpAddr, HeldLease)> = self.held.iter().map(|(ip, l)| (*ip, *l)).collect();
        for (ip, lease) in held {
            let sent = Instant::now();
            let renewed = self.call(self.leases.renew(
                ip,
                &self.node,
                lease.epoch,
                SystemTime::now(),
                self.ttl,
            ));
            match renewed.await {
                Ok(true) => self.hold(ip, lease.epoch, sent),
                Ok(false) => {
                    tracing::warn!(%ip, epoch = lease.epoch, "lease lost to another node; the IP is no longer used");
                    self.held.remove(&ip);
                }
                Err(e) if lease.until <= Instant::now() => {
                    tracing::warn!(%ip, error = %e, "lease could not be renewed before its deadline; the IP is no longer used");
                    self.held.remove(&ip);
                }
                Err(e) => {
                    tracing::warn!(%ip, error = %e, "lease renewal failed; retrying before the deadline")
                }
            }
        }
    }

    /// Gives back what is beyond `share`. The dispatcher stops using the IPs
    /// first; the lease ends `grace` later, so that transactions already on
    /// the wire finish before another node may take the IP.
    async fn release_extras(&mut self, share: usize, grace: Duration) {
        // Give back the IPs last in this node's preference.
        let extras: Vec<(IpAddr, u64)> = self
            .ips
            .iter()
            .rev()
            .filter_map(|ip| self.held.get(ip).map(|l| (*ip, l.epoch)))
            .take(self.held.len().saturating_sub(share))
            .collect();
        for (ip, _) in &extras {
            self.held.remove(ip);
        }
        if extras.is_empty() {
            return;
        }
        // Stop using them first: the dispatcher hears of it before the store.
        self.report();
        for (ip, epoch) in extras {
            tracing::info!(%ip, epoch, share, live = self.live, "releasing a lease beyond the fair share");
            let ends = SystemTime::now() + grace;
            let released = self.call(self.leases.release(ip, &self.node, epoch, ends));
            if let Err(e) = released.await {
                tracing::warn!(%ip, error = %e, "lease release failed; it expires by itself");
            }
        }
    }

    async fn take_up_to(&mut self, share: usize) {
        for ip in self.ips.clone() {
            if self.held.len() >= share {
                return;
            }
            if self.held.contains_key(&ip) || !(self.usable)(ip) {
                continue;
            }
            let sent = Instant::now();
            match self
                .call(
                    self.leases
                        .acquire(ip, &self.node, SystemTime::now(), self.ttl),
                )
                .await
            {
                Ok(Some(epoch)) => {
                    tracing::info!(%ip, epoch, share, live = self.live, "lease taken");
                    self.hold(ip, epoch, sent);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(%ip, error = %e, "lease take failed"),
            }
        }
    }

    fn hold(&mut self, ip: IpAddr, epoch: u64, sent: Instant) {
        let until = sent + self.ttl.saturating_sub(self.margin);
        self.held.insert(ip, HeldLease { epoch, until });
    }

    /// The pool's IPs changed (control): IPs no longer in it are released at
    /// once (the dispatcher hears first), new ones are taken in later rounds.
    pub async fn set_ips(&mut self, ips: &[IpAddr]) {
        self.ips = preference(ips, &self.node);
        let gone: Vec<(IpAddr, u64)> = self
            .held
            .iter()
            .filter(|(ip, _)| !self.ips.contains(ip))
            .map(|(ip, l)| (*ip, l.epoch))
            .collect();
        if gone.is_empty() {
            return;
        }
        for (ip, _) in &gone {
            self.held.remove(ip);
        }
        self.report();
        for (ip, epoch) in gone {
            tracing::info!(%ip, epoch, "releasing the lease of an IP no longer in the pool");
            let ends = SystemTime::now() + self.margin;
            if let Err(e) = self
                .call(self.leases.release(ip, &self.node, epoch, ends))
                .await
            {
                tracing::warn!(%ip, error = %e, "lease release failed; it expires by itself");
            }
        }
    }

    /// Releases everything held (on shutdown), so the others need not wait
    /// for the leases to expire.
    pub async fn release_all(&mut self) {
        self.release_extras(0, Duration::ZERO).await;
    }
}

/// Keeps leases every `every`, reporting what is held to `tx`, until `tx`'s
/// receiver is gone (the dispatcher drained); then releases them all.
/// `ips` carries the pool's IPs when they can change (control).
pub async fn keep<L: Leases>(
    keeper: Keeper<L>,
    every: Duration,
    tx: UnboundedSender<Held>,
    mut ips: Option<watch::Receiver<Vec<IpAddr>>>,
) {
    let mut keeper = keeper.reporting_to(tx.clone());
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let changed = async {
            let Some(rx) = ips.as_mut() else {
                return std::future::pending().await;
            };
            match rx.changed().await {
                Ok(()) => Some(rx.borrow_and_update().clone()),
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            Some(now) = changed => {
                super::warn_foreign(&now);
                keeper.set_ips(&now).await
            }
            _ = tx.closed() => break,
        }
        keeper.round().await;
        if !keeper.report() {
            break;
        }
    }
    keeper.release_all().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::LocalLeases;
    use sluice_shaping::Span;

    fn cfg() -> LeasesSection {
        LeasesSection {
            ttl: Span::secs(3),
            renew_interval: Span::secs(1),
            margin: Span::secs(1),
            ..Default::default()
        }
    }

    fn ips() -> Vec<IpAddr> {
        (10..14)
            .map(|i| format!("127.0.0.{i}").parse().unwrap())
            .collect()
    }

    fn carried_by_a(ip: IpAddr) -> bool {
        matches!(ip, IpAddr::V4(v4) if v4.octets()[3] < 12)
    }

    fn carried_by_b(ip: IpAddr) -> bool {
        !carried_by_a(ip)
    }

    #[tokio::test]
    async fn hosts_carrying_different_addresses_each_take_their_own() {
        let store = LocalLeases::default();
        let mut a = Keeper::new(store.clone(), "a", &ips(), &cfg()).only_from(carried_by_a);
        let mut b = Keeper::new(store.clone(), "b", &ips(), &cfg()).only_from(carried_by_b);
        let held = |k: &Keeper<LocalLeases>| -> Vec<String> {
            k.held().keys().map(ToString::to_string).collect()
        };
        a.round().await;
        assert_eq!(
            held(&a),
            ["127.0.0.10", "127.0.0.11"],
            "alone, only its own"
        );
        b.round().await;
        a.round().await;
        assert_eq!(held(&b), ["127.0.0.12", "127.0.0.13"]);
        assert_eq!(held(&a), ["127.0.0.10", "127.0.0.11"], "a keeps its share");
    }

    #[tokio::test]
    async fn two_nodes_split_the_pool_and_never_share_an_ip() {
        let store = LocalLeases::default();
        let mut a = Keeper::new(store.clone(), "a", &ips(), &cfg());
        let mut b = Keeper::new(store.clone(), "b", &ips(), &cfg());
        a.round().await;
        assert_eq!(a.held().len(), 4, "alone, a takes every IP");
        b.round().await;
        assert_eq!(b.held().len(), 0, "everything is held by a");
        a.round().await;
        assert_eq!(a.held().len(), 2, "a sees b and gives half back");
        b.round().await;
        assert_eq!(b.held().len(), 0, "a's release ends after the margin");
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        b.round().await;
        assert_eq!(b.held().len(), 2);
        for ip in b.held().keys() {
            assert!(!a.held().contains_key(ip), "{ip} held by both");
            assert_eq!(b.held()[ip].epoch, 2, "taken after a's release");
        }
    }

    #[tokio::test]
    async fn a_lease_taken_by_another_node_is_dropped_at_the_next_renewal() {
        let store = LocalLeases::default();
        let one: Vec<IpAddr> = ips()[..1].to_vec();
        let mut a = Keeper::new(store.clone(), "a", &one, &cfg());
        a.round().await;
        let epoch = a.held()[&one[0]].epoch;
        // Another node takes it after it expired (as if a had been stalled).
        let later = SystemTime::now() + Duration::from_secs(4);
        let took = store
            .acquire(one[0], "b", later, Duration::from_secs(3))
            .await;
        assert_eq!(took.unwrap(), Some(epoch + 1));
        a.round().await;
        assert!(
            a.held().is_empty(),
            "a's renewal fails: it stops using the IP"
        );
    }

    #[test]
    fn a_held_lease_ends_a_margin_before_its_ttl() {
        let mut a = Keeper::new(LocalLeases::default(), "a", &ips(), &cfg());
        let sent = Instant::now();
        a.hold(ips()[0], 7, sent);
        assert_eq!(a.held()[&ips()[0]].until, sent + Duration::from_secs(2));
    }
}
