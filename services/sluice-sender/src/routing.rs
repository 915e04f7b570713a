//! Routing off the consume path. The consumer only decodes, classifies and
//! hands records over: a record whose domain has a static route goes to
//! the dispatcher at once; any other is routed in a task of its own (at
//! most [`CONCURRENCY`] lookups at a time, one per domain in flight — see
//! [`Router`]), so one slow domain delays only its own mail, never the
//! partition or other domains. Records being routed count as in flight, so
//! the consumer's `queues.max_in_flight` bounds them too.
//!
//! MTA-STS ([`crate::mta_sts`]) applies to DNS routes only, in the same
//! task after the MX lookup: a static route is the operator's override
//! (a smart host, a relay, a test) and is used as configured. Under an
//! `enforce` policy only the MX hosts it names are kept, each to be
//! verified for its name; when none is left the message is deferred with
//! `451 4.7.5` and nothing is sent.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1::{BounceClass, Envelope, EventKind, SmtpReply};
use sluice_shaping::SiteResolver;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;
use tracing::Instrument;

use crate::dispatch::{Intake, RecordRef};
use crate::fate::synthetic;
use crate::mta_sts::{self, Applied, MtaSts};
use crate::route::{MxHost, Route, RouteError, Router};

/// DNS lookups waited on at once.
const CONCURRENCY: usize = 256;

/// Longest a DNS lookup may take before the message is deferred.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Routes records and hands them to the dispatcher.
#[derive(Clone)]
pub(crate) struct Routing {
    router: Arc<Router>,
    sites: SiteResolver,
    intake: UnboundedSender<Intake>,
    permits: Arc<Semaphore>,
    /// MTA-STS policies (`smtp.mta_sts`), for DNS routes.
    mta_sts: Option<Arc<MtaSts>>,
}

impl Routing {
    pub fn new(router: Router, sites: SiteResolver, intake: UnboundedSender<Intake>) -> Self {
        Self {
            router: Arc::new(router),
            sites,
            intake,
            permits: Arc::new(Semaphore::new(CONCURRENCY)),
            mta_sts: None,
        }
    }

    /// Applies the MTA-STS policies of `mta_sts` to DNS routes.
    pub fn with_mta_sts(mut self, mta_sts: Option<Arc<MtaSts>>) -> Self {
        self.mta_sts = mta_sts;
        self
    }

    /// Hands the record over once `domain` is routed: now for a static
    /// route, else from a task of its own.
    pub fn route(&self, rec: RecordRef, envelope: Envelope, domain: String) {
        if let Some(route) = self.router.static_route(&domain) {
            let intake = self.intake_for(Ok(Ok(route)), rec, envelope, &domain);
            return send(&self.intake, intake);
        }
        let this = self.clone();
        let span = tracing::info_span!(
            target: sluice_node::trace::TARGET, "sender.route",
            message_id = %envelope.message_id, domain = %domain,
        );
        sluice_node::trace::with_traceparent(&span, rec.trace.as_deref().map(str::as_bytes));
        let routing = async move {
            let _permit = this.permits.acquire().await;
            let routed = tokio::time::timeout(ROUTE_TIMEOUT, this.router.route(&domain)).await;
            let intake = match routed {
                Ok(Ok(Route::Hosts(hosts))) => this.secured(hosts, rec, envelope, &domain).await,
                other => this.intake_for(other, rec, envelope, &domain),
            };
            send(&this.intake, intake);
        };
        tokio::spawn(routing.instrument(span));
    }

    /// The intake for DNS-routed `hosts` once `domain`'s MTA-STS policy
    /// (if any) is applied. The policy lookup bounds itself (DNS timeouts,
    /// a 10 s fetch) and falls back as RFC 8461 §5.1 says.
    async fn secured(
        &self,
        hosts: Vec<MxHost>,
        rec: RecordRef,
        envelope: Envelope,
        domain: &str,
    ) -> Intake {
        let hosts = match &self.mta_sts {
            None => hosts,
            Some(policies) => {
                let policy = policies.policy(domain).await;
                match mta_sts::apply(policy.as_deref(), domain, hosts) {
                    Applied::Deliver(hosts) => hosts,
                    Applied::Refuse(text) => {
                        return deferred(rec, envelope, synthetic(451, "4.7.5", text));
                    }
                }
            }
        };
        self.intake_for(Ok(Ok(Route::Hosts(hosts))), rec, envelope, domain)
    }

    /// What the dispatcher gets for a routing result.
    fn intake_for(
        &self,
        routed: Result<Result<Route, RouteError>, tokio::time::error::Elapsed>,
        rec: RecordRef,
        envelope: Envelope,
        domain: &str,
    ) -> Intake {
        let no_mail = |text: String| synthetic(550, "5.1.2", text);
        match routed {
            Ok(Ok(Route::Hosts(hosts))) => {
                let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
                let site = self.sites.resolve(domain, &names);
                Intake::Deliver {
                    rec,
                    envelope,
                    site,
                    hosts,
                }
            }
            Ok(Ok(Route::NullMx)) => {
                let text = format!("{domain} publishes a null MX (RFC 7505): it accepts no mail");
                let reply = synthetic(556, "5.1.10", text);
                bounced(rec, envelope, reply, BounceClass::BadDomain)
            }
            Ok(Ok(Route::NoSuchDomain)) => {
                let reply = no_mail(format!("{domain} does not exist (NXDOMAIN)"));
                bounced(rec, envelope, reply, BounceClass::BadDomain)
            }
            Ok(Ok(Route::NoMailHosts)) => {
                let reply = no_mail(format!("{domain} has no MX and no address records"));
                bounced(rec, envelope, reply, BounceClass::BadDomain)
            }
            Ok(Err(err)) => deferred(rec, envelope, synthetic(451, "4.4.3", err.to_string())),
            Err(_) => {
                let text = format!("DNS lookup for {domain} took longer than {ROUTE_TIMEOUT:?}");
                deferred(rec, envelope, synthetic(451, "4.4.3", text))
            }
        }
    }
}

/// A bounce decided before any delivery (bad address, no mail host).
pub(crate) fn bounced(
    rec: RecordRef,
    envelope: Envelope,
    reply: SmtpReply,
    class: BounceClass,
) -> Intake {
    Intake::Final {
        rec,
        envelope,
        kind: EventKind::Bounced,
        reply,
        class,
    }
}

/// A deferral decided before any delivery (DNS failed for now).
pub(crate) fn deferred(rec: RecordRef, envelope: Envelope, reply: SmtpReply) -> Intake {
    tracing::info!(message_id = %envelope.message_id, reply = %reply.text, "deferred before delivery");
    Intake::Defer {
        rec,
        envelope,
        reply,
    }
}

/// Hands `intake` to the dispatcher.
pub(crate) fn send(to: &UnboundedSender<Intake>, intake: Intake) {
    if to.send(intake).is_err() {
        tracing::error!("the dispatcher stopped; the record stays uncommitted");
    }
}
