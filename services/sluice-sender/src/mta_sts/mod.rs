//! MTA-STS (RFC 8461): which MX hosts of a DNS-routed domain may get its
//! mail, and that their certificates must verify.
//!
//! Each routing looks the `_mta-sts.<domain>` TXT record up (hickory caches
//! it for its TTL) and compares its id with the cached policy's. The policy
//! is fetched ([`fetch`]) when the id differs or the cached one expired
//! (`max_age`); concurrent routings of one domain share one fetch. Fail
//! open (§5.1): a TXT record whose policy cannot be fetched, with no
//! unexpired cached policy, means delivery as without MTA-STS (logged); a
//! failed fetch or a missing TXT record with an unexpired cached policy
//! keeps that policy. A failed fetch is not retried for
//! [`cache::RETRY_FAILED_AFTER`] (the outcome meanwhile is the same).
//! Policies are not refreshed ahead of expiry: the next routing after it
//! fetches.

mod cache;
mod fetch;
pub mod policy;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};

pub use policy::{Mode, Policy};

use crate::route::{MxHost, Router, is_no_records};
use crate::smtp::TlsClients;
use cache::Cache;

/// Policies kept at most (one per recipient domain); the oldest goes first.
pub const CACHE_ENTRIES: usize = 100_000;

/// Where TXT records and policies come from (DNS and HTTPS, or a test's).
pub trait Source: Send + Sync + 'static {
    /// The `_mta-sts.<domain>` TXT records, each one's strings joined;
    /// empty when there are none; `Err` when DNS failed.
    fn txt(&self, domain: &str) -> impl Future<Output = Result<Vec<String>, String>> + Send;
    /// The policy served for `domain`.
    fn fetch(&self, domain: &str) -> impl Future<Output = Result<Policy, String>> + Send;
}

/// The time source of the cache (tests pass their own).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

type Flight = Shared<BoxFuture<'static, Result<Arc<Policy>, String>>>;

/// The policy cache and the rules of when to fetch.
pub struct Policies<S> {
    source: Arc<S>,
    clock: Clock,
    cache: Mutex<Cache>,
    flights: Mutex<HashMap<String, Flight>>,
}

/// The sender's: DNS through the router's resolver, HTTPS.
pub type MtaSts = Policies<Internet>;

impl<S: Source> Policies<S> {
    /// Policies from `source`, at most `capacity` cached.
    pub fn new(source: S, capacity: usize) -> Self {
        Self {
            source: Arc::new(source),
            clock: Arc::new(Instant::now),
            cache: Mutex::new(Cache::new(capacity)),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The same, reading time from `clock`.
    #[cfg(test)]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The policy that applies to `domain` now, if any (a `mode: none`
    /// policy is returned too: it applies, and asks for nothing).
    pub async fn policy(&self, domain: &str) -> Option<Arc<Policy>> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let txt = self.source.txt(&domain).await;
        let now = (self.clock)();
        let cached = self.lock().get(&domain, now);
        let kept = cached.as_ref().map(|c| c.policy.clone());
        let id = match txt.map(|records| policy::txt_policy_id(&records)) {
            Ok(Ok(Some(id))) => id,
            Ok(Ok(None)) => return kept,
            Ok(Err(invalid)) => {
                tracing::debug!(%domain, %invalid, "MTA-STS TXT record not usable; as if there were none");
                return kept;
            }
            Err(reason) => {
                tracing::debug!(%domain, %reason, "MTA-STS TXT lookup failed; as if there were none");
                return kept;
            }
        };
        if cached.as_ref().is_some_and(|c| c.id == id) {
            return kept;
        }
        if self.lock().recently_failed(&domain, &id, now) {
            return kept;
        }
        match self.fetch_shared(&domain).await {
            Ok(policy) => {
                self.lock().put(&domain, id, policy.clone(), (self.clock)());
                Some(policy)
            }
            Err(reason) => {
                self.lock().failed(&domain, &id, (self.clock)());
                if kept.is_some() {
                    tracing::warn!(%domain, %reason, "MTA-STS policy fetch failed; keeping the cached policy");
                } else {
                    tracing::warn!(%domain, %reason, "MTA-STS policy fetch failed and none is cached: delivering as without MTA-STS (RFC 8461 §5.1)");
                }
                kept
            }
        }
    }

    /// Fetches `domain`'s policy, joining a fetch already in flight.
    async fn fetch_shared(&self, domain: &str) -> Result<Arc<Policy>, String> {
        let flight = {
            let mut flights = self.flights.lock().expect("MTA-STS flights lock");
            flights
                .entry(domain.to_owned())
                .or_insert_with(|| {
                    let (source, domain) = (self.source.clone(), domain.to_owned());
                    async move { source.fetch(&domain).await.map(Arc::new) }
                        .boxed()
                        .shared()
                })
                .clone()
        };
        let result = flight.clone().await;
        let mut flights = self.flights.lock().expect("MTA-STS flights lock");
        if flights.get(domain).is_some_and(|f| f.ptr_eq(&flight)) {
            flights.remove(domain);
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().expect("MTA-STS cache lock")
    }
}

/// What a policy makes of a domain's MX hosts.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Deliver to these (under `enforce`: the matching ones, each to be
    /// verified for its name).
    Deliver(Vec<MxHost>),
    /// `enforce` and no host matches: send nothing; says why.
    Refuse(String),
}

/// Applies `policy` to `hosts`, the MX hosts `domain` resolved to.
pub fn apply(policy: Option<&Policy>, domain: &str, hosts: Vec<MxHost>) -> Applied {
    let Some(policy) = policy else {
        return Applied::Deliver(hosts);
    };
    match policy.mode {
        Mode::None => Applied::Deliver(hosts),
        Mode::Testing => {
            let stray: Vec<&str> = hosts
                .iter()
                .filter(|h| !policy.matches(&h.name))
                .map(|h| h.name.as_str())
                .collect();
            if !stray.is_empty() {
                tracing::warn!(%domain, ?stray, patterns = ?policy.mx, "MX hosts not in the domain's MTA-STS policy (mode testing: delivering anyway)");
            }
            Applied::Deliver(hosts)
        }
        Mode::Enforce => {
            let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
            let allowed: Vec<MxHost> = hosts
                .into_iter()
                .filter(|h| policy.matches(&h.name))
                .map(|h| MxHost {
                    verify_tls: true,
                    ..h
                })
                .collect();
            if allowed.is_empty() {
                return Applied::Refuse(format!(
                    "no MX host of {domain} matches its MTA-STS policy (mode enforce; MX {}; policy mx {})",
                    names.join(", "),
                    policy.mx.join(", ")
                ));
            }
            Applied::Deliver(allowed)
        }
    }
}

/// The sender's policies when `smtp.mta_sts` is on and DNS is used.
pub fn from_config(
    smtp: &crate::config::SmtpSection,
    router: &Router,
    tls: &TlsClients,
) -> Option<Arc<MtaSts>> {
    let dns = router.resolver()?.clone();
    if !smtp.mta_sts {
        return None;
    }
    let fetcher = fetch::Fetcher::new(dns.clone(), tls.https(), smtp.mta_sts_port);
    let source = Internet { dns, fetcher };
    Some(Arc::new(Policies::new(source, CACHE_ENTRIES)))
}

/// TXT records over DNS, policies over HTTPS.
pub struct Internet {
    dns: TokioResolver,
    fetcher: fetch::Fetcher,
}

impl Source for Internet {
    async fn txt(&self, domain: &str) -> Result<Vec<String>, String> {
        let name = format!("_mta-sts.{domain}.");
        match self.dns.lookup(name.as_str(), RecordType::TXT).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if is_no_records(&e) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn fetch(&self, domain: &str) -> Result<Policy, String> {
        self.fetcher.fetch(domain).await
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
