//! Routing off the consume path. The consumer only decodes, classifies and
//! hands records over: a record whose domain has a static route goes to
//! the dispatcher at once; any other is routed in a task of its own (at
//! most [`CONCURRENCY`] lookups at a time, one per domain in flight — see
//! [`Router`]), so one slow domain delays only its own mail, never the
//! partition or other domains. Records being routed count as in flight, so
//! the consumer's `queues.max_in_flight` bounds them too.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1::{BounceClass, Envelope, EventKind, SmtpReply};
use sluice_shaping::SiteResolver;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;

use crate::dispatch::{Intake, RecordRef};
use crate::fate::synthetic;
use crate::route::{Route, RouteError, Router};

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
}

impl Routing {
    pub fn new(router: Router, sites: SiteResolver, intake: UnboundedSender<Intake>) -> Self {
        Self {
            router: Arc::new(router),
            sites,
            intake,
            permits: Arc::new(Semaphore::new(CONCURRENCY)),
        }
    }

    /// Hands the record over once `domain` is routed: now for a static
    /// route, else from a task of its own.
    pub fn route(&self, rec: RecordRef, envelope: Envelope, domain: String) {
        if let Some(route) = self.router.static_route(&domain) {
            let intake = self.intake_for(Ok(Ok(route)), rec, envelope, &domain);
            return send(&self.intake, intake);
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = this.permits.acquire().await;
            let routed = tokio::time::timeout(ROUTE_TIMEOUT, this.router.route(&domain)).await;
            let intake = this.intake_for(routed, rec, envelope, &domain);
            send(&this.intake, intake);
        });
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
