//! The dispatcher: owns the shaping engine, the ready queue of every site and
//! the idle connections, and starts deliveries the moment limits allow.
//!
//! It is one task, so the engine needs no lock. Inputs arrive on channels:
//! routed messages from the consumer, finished attempts from delivery tasks.
//! Every message that leaves the dispatcher leaves with a [`Fate`] that a
//! publish task makes durable before the record's offset is released.

mod configured;
mod connections;
mod fates;
mod ipstate;
mod leased;
mod parking;
mod pump;
mod revoke;

pub use revoke::Revocation;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_proto::v1::{BounceClass, Envelope, EventKind, SmtpReply};
use sluice_shaping::{Engine, Millis, PathId, PoolKey, Site, SiteKey, Span};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::SenderConfig;
use crate::deliver::{Done, Live};
use crate::fate::Fate;
use crate::offsets::OffsetTracker;
use crate::publish::Publisher;
use crate::route::MxHost;

/// Where a record came from, to release its offset once its fate is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The trace context the record carried (its `traceparent` header), when
    /// traces are exported; a delivery attempt replaces it with its own, so
    /// the fate's records continue the trace from the attempt.
    pub trace: Option<String>,
}

/// What the consumer hands over.
pub enum Intake {
    /// A routed message, ready to be scheduled.
    Deliver {
        rec: RecordRef,
        envelope: Envelope,
        site: Site,
        hosts: Vec<MxHost>,
    },
    /// A message whose outcome is already known (bad domain, malformed, ...).
    Final {
        rec: RecordRef,
        envelope: Envelope,
        kind: EventKind,
        reply: SmtpReply,
        class: BounceClass,
    },
    /// A message that cannot be routed now (DNS trouble): retry later.
    Defer {
        rec: RecordRef,
        envelope: Envelope,
        reply: SmtpReply,
    },
    /// A message scheduled for later than a hop ahead: moved to the delay
    /// tier that fits the wait, so it holds no partition meanwhile.
    Schedule { rec: RecordRef, envelope: Envelope },
    /// Partitions revoked: drop their queued messages ([`Revocation`]).
    Revoke(Revocation),
}

/// A message waiting in a site's ready queue.
pub(crate) struct Queued {
    rec: RecordRef,
    envelope: Envelope,
    hosts: Vec<MxHost>,
    arrived: Instant,
}

/// Why a site's queued messages cannot start now (the shaping engine's
/// [`sluice_shaping::Blocked`], as the `reason` of `site_waiting`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A rate, calendar or warm-up limit, or a suspension, allows the next
    /// message (or connection) later.
    Rate = 0,
    /// Every connection the limits allow is busy.
    Connections = 1,
    /// Every IP that could send is paused.
    Held = 2,
}

impl Wait {
    const ALL: [Wait; 3] = [Wait::Rate, Wait::Connections, Wait::Held];

    fn label(self) -> &'static str {
        match self {
            Wait::Rate => "rate",
            Wait::Connections => "connections",
            Wait::Held => "held",
        }
    }
}

pub(crate) struct SiteQueue {
    key: SiteKey,
    name: String,
    require_tls: bool,
    queue: VecDeque<Queued>,
    /// Do not ask the engine again before this time.
    wake_at: Option<Millis>,
    /// Why the last attempt to start a delivery stopped, while messages wait.
    waiting: Option<Wait>,
    /// How fast the queue drains, and how long its overflow waits.
    parking: parking::Parking,
}

pub(crate) struct Idle {
    conn: sluice_shaping::Connection,
    live: Live,
    since: Instant,
}

/// Shared counters, for logs, metrics and tests.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub expired: u64,
    pub overflowed: u64,
    /// Messages written to a delay tier because they were not due yet.
    pub hops: u64,
    pub in_delivery: usize,
    pub queued: usize,
    /// (IP, site) paths currently paused or slowed by reputation.
    pub signaled_paths: usize,
    /// Tenants currently paused by reputation.
    pub paused_tenants: usize,
    /// Source IPs this node currently holds a lease on.
    pub leased_ips: usize,
}

pub struct Dispatcher {
    cfg: Arc<SenderConfig>,
    engine: Engine,
    pool: PoolKey,
    sites: Vec<SiteQueue>,
    site_index: HashMap<SiteKey, usize>,
    idle: HashMap<PathId, Vec<Idle>>,
    deliveries: JoinSet<Done>,
    /// The source IP of each delivery in progress, by its task.
    busy: HashMap<tokio::task::Id, std::net::IpAddr>,
    publishes: JoinSet<()>,
    /// Connections saying QUIT; the engine counts them open until the server
    /// has answered, so a new connection never overlaps a closing one.
    closing: JoinSet<sluice_shaping::Connection>,
    publisher: Publisher,
    tracker: Arc<Mutex<OffsetTracker>>,
    stats: Arc<Mutex<Stats>>,
    metrics: Arc<crate::metrics::SenderMetrics>,
    rng: u64,
    queued: usize,
    saved_at: Instant,
    /// (IP, site) pairs that currently carry a reputation signal.
    signaled: Vec<(std::net::IpAddr, String)>,
    /// Tenants paused by reputation: their mail waits in a delay tier.
    paused_tenants: std::collections::BTreeSet<String>,
    /// Per-IP reputation signals (applied only while the IP is leased).
    ip_signals: HashMap<std::net::IpAddr, sluice_shaping::Signal>,
    /// The leases held, from the keeper; nothing else may send.
    leases: crate::leases::Held,
    /// Tenants paused in control (their mail waits like reputation pauses).
    control_paused: std::collections::BTreeSet<String>,
    /// Partitions the group took away; no delivery starts for their records.
    fence: sluice_log::Fence,
    /// The per-IP state store, when state moves with the leases.
    ip_states: Option<ipstate::IpStateSync>,
    /// TLS clients (verified for sites that require TLS).
    tls: Arc<crate::smtp::TlsClients>,
    /// Where a change of a site's limits is told ([`crate::wake`]).
    wakes: Option<mpsc::UnboundedSender<crate::wake::Wake>>,
    site_queues: Option<Arc<crate::wake::SiteQueues>>,
    /// The latest policy change of each site, as told to the consumer.
    woken: HashMap<String, Millis>,
}

impl Dispatcher {
    pub fn new(
        cfg: Arc<SenderConfig>,
        engine: Engine,
        publisher: Publisher,
        tracker: Arc<Mutex<OffsetTracker>>,
        (stats, metrics): (Arc<Mutex<Stats>>, Arc<crate::metrics::SenderMetrics>),
        tls: Arc<crate::smtp::TlsClients>,
    ) -> Self {
        let mut engine = engine;
        if engine.pool_key(&cfg.pool).is_none() {
            tracing::warn!(pool = %cfg.pool, "no enabled source IP in this pool yet: its mail waits until one is added (`sluice admin ip put <address> --pool {}`)", cfg.pool);
        }
        let pool = engine.pool_key_or_new(&cfg.pool);
        let mut dispatcher = Self {
            cfg,
            engine,
            pool,
            sites: Vec::new(),
            site_index: HashMap::new(),
            idle: HashMap::new(),
            deliveries: JoinSet::new(),
            busy: HashMap::new(),
            publishes: JoinSet::new(),
            closing: JoinSet::new(),
            publisher,
            tracker,
            stats,
            metrics,
            rng: seed(),
            queued: 0,
            saved_at: Instant::now(),
            signaled: Vec::new(),
            paused_tenants: Default::default(),
            ip_signals: HashMap::new(),
            leases: Default::default(),
            control_paused: Default::default(),
            fence: Default::default(),
            ip_states: None,
            tls,
            wakes: None,
            site_queues: None,
            woken: HashMap::new(),
        };
        // Nothing is leased until the keeper says so.
        dispatcher.apply_leases(Default::default());
        dispatcher
    }

    /// Tells `wakes` of every site whose limits control changes, so its
    /// parked mail goes at once, and counts the sites' queues into
    /// `queues`, so it goes at the pace they drain ([`crate::wake`]).
    pub fn with_wakes(
        mut self,
        wakes: mpsc::UnboundedSender<crate::wake::Wake>,
        queues: Arc<crate::wake::SiteQueues>,
    ) -> Self {
        self.wakes = Some(wakes);
        self.site_queues = Some(queues);
        self
    }

    /// Stops starting deliveries for partitions `fence` closes (the
    /// consumer's: closed when the group revokes them).
    pub fn with_fence(mut self, fence: sluice_log::Fence) -> Self {
        fence.set_drain(self.cfg.drain_timeout.into());
        self.fence = fence;
        self
    }

    /// Moves each IP's state with its lease through `store`: an IP is used
    /// only once its stored state is loaded (docs/leases.md).
    pub fn with_ip_states(mut self, store: crate::leases::AnyIpStates) -> Self {
        let timeout = self.cfg.leases.margin.into();
        self.ip_states = Some(ipstate::IpStateSync::new(store, timeout));
        self.gate_ips();
        self
    }

    /// Runs until `intake` closes (the consumer stopped), then drains:
    /// deliveries in progress finish and their fates are published; messages
    /// still queued are left uncommitted for the partition's next owner.
    pub async fn run(
        mut self,
        mut intake: mpsc::UnboundedReceiver<Intake>,
        mut signals: mpsc::UnboundedReceiver<crate::reputation::Signals>,
        mut leases: mpsc::UnboundedReceiver<crate::leases::Held>,
        mut control: mpsc::UnboundedReceiver<crate::control::ControlUpdate>,
    ) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            let wake = self.next_wake();
            tokio::select! {
                msg = intake.recv() => match msg {
                    Some(msg) => self.accept(msg),
                    None => break,
                },
                Some(joined) = self.deliveries.join_next_with_id(), if !self.deliveries.is_empty() => {
                    self.joined(joined);
                }
                Some(_) = self.publishes.join_next(), if !self.publishes.is_empty() => {}
                Some(s) = signals.recv() => self.apply_signals(s),
                Some(held) = leases.recv() => self.apply_leases(held),
                event = ipstate::next_event(&mut self.ip_states) => self.on_ip_state_event(event),
                Some(update) = control.recv() => self.apply_control(update),
                Some(closed) = self.closing.join_next(), if !self.closing.is_empty() => {
                    if let Ok(conn) = closed {
                        self.engine.on_connection_close(fate_now(), conn);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
                _ = tick.tick() => {
                    self.close_stale_idle();
                    self.save_state_if_due().await;
                    self.publish_site_queues();
                    self.publish_connections();
                }
            }
            self.expire_leases();
            self.pump_all();
            self.publish_stats();
        }
        self.drain().await;
    }

    async fn drain(&mut self) {
        tracing::info!(
            deliveries = self.deliveries.len(),
            queued = self.queued,
            "draining: waiting for deliveries in progress; queued messages stay uncommitted"
        );
        while let Some(joined) = self.deliveries.join_next_with_id().await {
            self.joined(joined);
        }
        while self.publishes.join_next().await.is_some() {}
        let idle: Vec<Idle> = self.idle.drain().flat_map(|(_, v)| v).collect();
        for i in idle {
            self.close(i.conn, i.live);
        }
        while self.closing.join_next().await.is_some() {}
        self.save_state().await;
        self.flush_ip_states().await;
        self.publish_stats();
    }

    /// Applies a reading of the reputation table: paths named in it get their
    /// signal, paths no longer named are cleared.
    fn apply_signals(&mut self, s: crate::reputation::Signals) {
        for (ip, site) in std::mem::take(&mut self.signaled) {
            if !s.sites.contains_key(&(ip, site.clone())) {
                self.engine
                    .set_site_signal(ip, &site, sluice_shaping::Signal::Ok);
            }
        }
        for ((ip, site), signal) in &s.sites {
            tracing::info!(%ip, %site, ?signal, "reputation signal applied");
            self.engine.set_site_signal(*ip, site, *signal);
        }
        for (ip, signal) in &s.ips {
            self.ip_signals.insert(*ip, *signal);
            self.gate_ip(*ip);
        }
        self.signaled = s.sites.keys().cloned().collect();
        if s.paused_tenants != self.paused_tenants {
            tracing::info!(paused = ?s.paused_tenants, "tenants paused by reputation");
        }
        self.paused_tenants = s.paused_tenants;
        self.stats.lock().expect("stats lock").paused_tenants = self.paused_tenants.len();
        self.stats.lock().expect("stats lock").signaled_paths = self.signaled.len();
        self.metrics.signaled_paths.set(self.signaled.len() as i64);
    }

    async fn save_state_if_due(&mut self) {
        let interval = std::time::Duration::from_millis(self.cfg.state.interval.0);
        if self.saved_at.elapsed() >= interval {
            self.saved_at = Instant::now();
            self.save_ip_states();
            self.save_state().await;
        }
    }

    /// Saves the engine's state (off the async workers); a failure is logged
    /// and retried at the next interval.
    async fn save_state(&mut self) {
        let Some(file) = self.cfg.state.file.clone() else {
            return;
        };
        self.saved_at = Instant::now();
        let snapshot = self.engine.snapshot();
        let saved = tokio::task::spawn_blocking(move || crate::state::save(&file, &snapshot)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::error!(%err, "saving the shaping state failed; limits would not survive a restart until it succeeds (check the disk)")
            }
            Err(err) => tracing::error!(%err, "the state saving task failed"),
        }
    }

    fn accept(&mut self, msg: Intake) {
        match msg {
            Intake::Deliver {
                rec,
                envelope,
                site,
                hosts,
            } => self.enqueue(rec, envelope, site, hosts),
            Intake::Final {
                rec,
                envelope,
                kind,
                reply,
                class,
            } => {
                let fate =
                    fates::final_fate(&envelope, kind, Some(reply), class, &Default::default());
                let fate = self.noticed(&envelope, fate);
                self.count_fate(&fate);
                self.spawn_publish(rec, fate);
            }
            Intake::Defer {
                rec,
                envelope,
                reply,
            } => {
                let fate = self.retry_fate(
                    &envelope,
                    reply,
                    Default::default(),
                    sluice_shaping::Span(0),
                );
                let fate = self.noticed(&envelope, fate);
                self.count_fate(&fate);
                self.spawn_publish(rec, fate);
            }
            Intake::Schedule { rec, envelope } => {
                self.stats.lock().expect("stats lock").hops += 1;
                self.metrics.hops.inc();
                let fate = fates::scheduled(&self.cfg, self.engine.retry(), &envelope, fate_now());
                self.spawn_publish(rec, fate);
            }
            Intake::Revoke(revocation) => self.revoke(revocation),
        }
    }

    fn enqueue(&mut self, rec: RecordRef, envelope: Envelope, site: Site, hosts: Vec<MxHost>) {
        let key = self.engine.site_key(&site);
        let idx = match self.site_index.get(&key) {
            Some(&i) => i,
            None => {
                let require_tls = self.cfg.smtp.require_tls_sites.contains(&site.name);
                self.sites.push(SiteQueue {
                    key,
                    name: site.name.clone(),
                    require_tls,
                    queue: VecDeque::new(),
                    wake_at: None,
                    waiting: None,
                    parking: Default::default(),
                });
                self.site_index.insert(key, self.sites.len() - 1);
                self.sites.len() - 1
            }
        };
        if self.sites[idx].queue.len() >= self.cfg.queues.max_per_site {
            let now = fate_now();
            if fates::is_expired(&envelope, now) {
                return self.settle_expired(rec, &envelope, now);
            }
            let delay = self.overflow_hold(idx, &envelope, now);
            let parked = fates::parked(envelope, &site.name, now);
            let fate = fates::overflow(&self.cfg, self.engine.retry(), &parked, now, delay);
            self.stats.lock().expect("stats lock").overflowed += 1;
            self.metrics.overflowed.inc();
            self.spawn_publish(rec, fate);
            return;
        }
        self.sites[idx].queue.push_back(Queued {
            rec,
            envelope,
            hosts,
            arrived: Instant::now(),
        });
        self.sites[idx].wake_at = None;
        self.queued += 1;
    }

    /// Publishes the `expired` fate (and its notice) of a message past its
    /// lifetime.
    pub(super) fn settle_expired(&mut self, rec: RecordRef, envelope: &Envelope, now: Millis) {
        let fate = self.noticed(envelope, fates::expired(envelope, now));
        self.count_fate(&fate);
        self.spawn_publish(rec, fate);
    }

    /// How long a message overflowing the full queue `idx` waits: its drain
    /// slot ([`parking`]), as far as a longer tier if it came back from the
    /// furthest ([`parking::furthest`]), but never past its expiry.
    fn overflow_hold(&mut self, idx: usize, envelope: &Envelope, now: Millis) -> Span {
        let queues = &self.cfg.queues;
        let min = queues.overflow_delay;
        let waited = crate::fate::millis(&envelope.parked_at).map(|at| now.since(at));
        let tiers = self.engine.retry().tiers();
        let max = parking::furthest(queues.max_overflow_hold, waited, tiers);
        let queued = self.sites[idx].queue.len();
        let hold = self.sites[idx].parking.hold(now, queued, min, max);
        match crate::fate::millis(&envelope.expires_at) {
            Some(expires) => hold.min(expires.since(now)),
            None => hold,
        }
    }

    /// Publishes `fate` in its own task and releases the record's offset after.
    fn spawn_publish(&mut self, rec: RecordRef, fate: Fate) {
        let publisher = self.publisher.clone();
        let tracker = self.tracker.clone();
        // Taken before the delivery's own token drops, so a revocation
        // never sees the record settled before its fate is published.
        let work = self.fence.begin(&rec.topic, rec.partition);
        self.publishes.spawn(async move {
            publisher.settle(&rec, &fate).await;
            drop(work);
            tracker.lock().expect("offset tracker lock").finish(
                &rec.topic,
                rec.partition,
                rec.offset,
            );
        });
    }

    fn next_wake(&self) -> tokio::time::Instant {
        let now_ms = fate_now();
        let soonest = self
            .sites
            .iter()
            .filter(|s| !s.queue.is_empty())
            .filter_map(|s| s.wake_at)
            .min();
        let wait = soonest.map_or(std::time::Duration::from_secs(1), |t| {
            std::time::Duration::from_millis(t.0.saturating_sub(now_ms.0))
        });
        tokio::time::Instant::now() + wait.min(std::time::Duration::from_secs(1))
    }

    fn publish_stats(&self) {
        let mut stats = self.stats.lock().expect("stats lock");
        stats.in_delivery = self.deliveries.len();
        stats.queued = self.queued;
        self.metrics.in_delivery.set(self.deliveries.len() as i64);
        self.metrics.queued.set(self.queued as i64);
        let in_flight = self
            .tracker
            .lock()
            .expect("offset tracker lock")
            .in_flight();
        self.metrics.records_in_flight.set(in_flight as i64);
    }

    /// Per site (label): messages queued, the oldest one's wait, and how
    /// many of its sites wait for each [`Wait`] reason.
    fn publish_site_queues(&self) {
        if let Some(queues) = &self.site_queues {
            let mut queued: HashMap<String, usize> = HashMap::new();
            for site in &self.sites {
                *queued.entry(site.name.clone()).or_default() += site.queue.len();
            }
            queues.publish(queued);
        }
        let mut by_site: std::collections::BTreeMap<String, (i64, f64, [i64; 3])> =
            Default::default();
        for site in &self.sites {
            let entry = by_site
                .entry(crate::metrics::site_label(&site.name))
                .or_default();
            entry.0 += site.queue.len() as i64;
            if let Some(front) = site.queue.front() {
                entry.1 = entry.1.max(front.arrived.elapsed().as_secs_f64());
            }
            if let Some(wait) = site.waiting.filter(|_| !site.queue.is_empty()) {
                entry.2[wait as usize] += 1;
            }
        }
        for (site, (queued, oldest, waits)) in by_site {
            for (wait, n) in Wait::ALL.iter().zip(waits) {
                let labels = crate::metrics::WaitLabels {
                    site: site.clone(),
                    reason: wait.label().to_owned(),
                };
                self.metrics.site_waiting.get_or_create(&labels).set(n);
            }
            let labels = crate::metrics::SiteLabels { site };
            self.metrics.site_queued.get_or_create(&labels).set(queued);
            self.metrics
                .site_oldest_seconds
                .get_or_create(&labels)
                .set(oldest);
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: fast, and good enough to spread messages over IPs.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn fate_now() -> Millis {
    crate::fate::now()
}

fn seed() -> u64 {
    let t = crate::fate::now().0;
    (t ^ 0x9E37_79B9_7F4A_7C15) | 1
}
