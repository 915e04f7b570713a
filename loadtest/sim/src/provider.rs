//! One simulated provider's shared state: its rules, its limit counters, its
//! greylist and random generator, and the ledger it writes to.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_smtp::Reply;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::ledger::Ledger;
use crate::limits::{Greylist, Limiter, Ticket};
use crate::reply::{LimitKind, deferral};
use crate::report::AcceptedMessage;
use crate::rng::SeededRng;
use crate::scenario::ProviderConfig;

struct Counters {
    limiter: Limiter,
    greylist: Greylist,
    rng: SeededRng,
}

/// A provider as the sessions see it. Shared by all its connections.
pub struct Provider {
    config: ProviderConfig,
    addr: SocketAddr,
    host: String,
    domains: HashSet<String>,
    unknown: HashSet<String>,
    full: HashSet<String>,
    full_permanent: HashSet<String>,
    counters: Mutex<Counters>,
    ledger: Arc<Mutex<Ledger>>,
    tls: Option<TlsAcceptor>,
}

/// Holds one connection slot of a source IP; gives it back when dropped.
pub struct ConnectionSlot {
    provider: Arc<Provider>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.provider.counters().limiter.close_connection(self.ip);
    }
}

fn lowercase_set(items: &[String]) -> HashSet<String> {
    items.iter().map(|s| s.to_ascii_lowercase()).collect()
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Provider {
    /// Builds the provider for `config`, listening on `addr`.
    pub(crate) fn new(
        config: ProviderConfig,
        addr: SocketAddr,
        seed: u64,
        ledger: Arc<Mutex<Ledger>>,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        let counters = Counters {
            limiter: Limiter::new(config.limits.clone()),
            greylist: Greylist::new(Duration::from_secs(config.greylist_secs)),
            rng: SeededRng::new(seed),
        };
        Provider {
            host: config.host(),
            domains: lowercase_set(&config.domains),
            unknown: lowercase_set(&config.unknown_users),
            full: lowercase_set(&config.mailbox_full),
            full_permanent: lowercase_set(&config.mailbox_full_permanent),
            tls: tls.filter(|_| config.starttls),
            counters: Mutex::new(counters),
            config,
            addr,
            ledger,
        }
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        lock(&self.counters)
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    /// The scenario's settings for this provider.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The bound listener address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Host name for the banner and EHLO.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TLS acceptor, when STARTTLS is offered.
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    /// Takes a connection slot for `ip`, or returns the deferral reply to
    /// send instead of the banner (and counts the violation).
    pub fn open_connection(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Reply> {
        self.ledger().connection(self.name(), ip);
        let opened = self.counters().limiter.open_connection(ip);
        match opened {
            Ok(()) => Ok(ConnectionSlot {
                provider: Arc::clone(self),
                ip,
            }),
            Err(kind) => Err(self.violation(ip, kind)),
        }
    }

    /// Counts a violation of `kind` by `ip` and returns the deferral reply.
    pub fn violation(&self, ip: IpAddr, kind: LimitKind) -> Reply {
        let reply = deferral(self.config.style, kind, ip);
        let mut ledger = self.ledger();
        ledger.violation(self.name(), ip, kind);
        ledger.refused(self.name(), ip, &reply);
        reply
    }

    /// Counts a policy refusal (4xx deferred, 5xx rejected) and returns it.
    pub fn refuse(&self, ip: IpAddr, reply: Reply) -> Reply {
        self.ledger().refused(self.name(), ip, &reply);
        reply
    }

    /// Counts a new message in `ip`'s per-minute window, or refuses it.
    pub fn start_message(&self, ip: IpAddr, now: Instant) -> Result<Ticket, Reply> {
        let started = self.counters().limiter.start_message(ip, now);
        match started {
            Ok((ticket, count)) => {
                self.ledger().observe_rate(self.name(), ip, count);
                Ok(ticket)
            }
            Err(kind) => Err(self.violation(ip, kind)),
        }
    }

    /// Takes an aborted message back out of the per-minute window.
    pub fn abort_message(&self, ip: IpAddr, ticket: Ticket) {
        self.counters().limiter.abort_message(ip, ticket);
    }

    /// True if this provider accepts mail for `domain`.
    pub fn serves(&self, domain: &str) -> bool {
        self.domains.contains(&domain.to_ascii_lowercase())
    }

    /// The refusal configured for this local part, if any.
    pub fn mailbox_verdict(&self, local: &str) -> Option<Reply> {
        let local = local.to_ascii_lowercase();
        if self.unknown.contains(&local) {
            let text = "5.1.1 The email account that you tried to reach does not exist";
            return Some(Reply::new(550, text));
        }
        if self.full.contains(&local) {
            let text = "4.2.2 The email account that you tried to reach is over quota";
            return Some(Reply::new(452, text));
        }
        if self.full_permanent.contains(&local) {
            return Some(Reply::new(552, "5.2.2 Mailbox full"));
        }
        None
    }

    /// True if the greylist lets this triplet through at `now`.
    pub fn greylist_pass(&self, ip: IpAddr, from: &str, to: &str, now: Instant) -> bool {
        self.counters().greylist.pass(ip, from, to, now)
    }

    /// Draws the configured random failures for one message.
    pub fn random_failure(&self) -> Option<Reply> {
        let mut counters = self.counters();
        if counters.rng.chance(self.config.temp_failure_rate) {
            let text = "4.3.0 Temporary system problem. Try again later";
            return Some(Reply::new(451, text));
        }
        if counters.rng.chance(self.config.perm_failure_rate) {
            return Some(Reply::new(554, "5.7.0 Message rejected by policy"));
        }
        None
    }

    /// Records an accepted message.
    pub fn record(&self, message: AcceptedMessage) {
        self.ledger().accepted(message);
    }

    /// Keeps the bytes of `message` when the scenario asks (`keep_bodies`).
    pub fn keep_body(&self, message: &AcceptedMessage, body: &[u8]) {
        if self.config.keep_bodies {
            let recipients = message.recipients.clone();
            self.ledger().bodies.push((recipients, body.to_vec()));
        }
    }

    /// Queues the late feedback (scenario `feedback`) `message` will get.
    pub fn feedback_later(&self, message: &AcceptedMessage, body: &[u8]) {
        let Some(config) = &self.config.feedback else {
            return;
        };
        let now = crate::session::unix_ms();
        let due = crate::feedback::reports(config, message, body, &self.host, now);
        if !due.is_empty() {
            self.ledger().feedback_due.extend(due);
        }
    }
}
