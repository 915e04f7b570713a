//! The signed links in every message Sluice sends and the HTTP endpoints
//! that answer them (docs/feedback.md): the one-click unsubscribe link of
//! `List-Unsubscribe` (RFC 8058) and, in tracked messages, the open pixel
//! and click redirects. Ingest signs the links; the inbound role's HTTP
//! listener (and ingest's) answers them. A valid request publishes its
//! event (`unsubscribed`, `opened`, `clicked`) through a [`Sink`]; anything
//! forged is refused and changes nothing.

pub mod pages;
pub mod token;
pub mod tracking;
pub mod tracking_http;
pub mod unsubscribe;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use sluice_proto::v1::{Engagement, Event, EventKind};

use crate::tracking::{Kind, Tracked, Tracking};
use crate::unsubscribe::{Unsubscribe, UnsubscribeTarget};

/// Where a role puts the events its link endpoints make.
pub trait Sink: Send + Sync + 'static {
    /// Publishes `event` to the events topic, keyed by its message id;
    /// resolves once the log holds it.
    fn publish(&self, event: Event) -> BoxFuture<'_, Result<(), String>>;

    /// Counts one answered link request (`what`: `unsubscribe`, `open` or
    /// `click`; `outcome`: `recorded`, `refused`, `failed` or
    /// `unconfirmed`). Nothing by default.
    fn count(&self, what: &str, outcome: &str) {
        let _ = (what, outcome);
    }
}

/// What the endpoints share.
pub struct Links {
    pub unsubscribe: Unsubscribe,
    /// `None`: no tracking base URL, the open and click paths are not served.
    pub tracking: Option<Tracking>,
    /// Time a request body may take to arrive.
    pub body_timeout: Duration,
    pub sink: Arc<dyn Sink>,
}

impl Links {
    /// The unsubscribe and, when configured, tracking routes.
    pub fn routes(self: Arc<Self>) -> axum::Router {
        let unsubscribe = pages::routes(self.clone());
        match &self.tracking {
            Some(tracking) => unsubscribe.merge(tracking_http::routes(self.clone(), tracking)),
            None => unsubscribe,
        }
    }
}

/// The `unsubscribed` event of a verified one-click unsubscribe.
pub fn unsubscribed(target: &UnsubscribeTarget) -> Event {
    Event {
        event_id: ulid::Ulid::new().to_string(),
        kind: EventKind::Unsubscribed.into(),
        message_id: target.message_id.clone(),
        tenant: target.tenant.clone(),
        recipient: target.recipient.clone(),
        list: target.list.clone(),
        at: Some(SystemTime::now().into()),
        ..Default::default()
    }
}

/// The `opened` or `clicked` event of a verified tracking request made
/// with `user_agent`.
pub fn engaged(tracked: &Tracked, user_agent: &str) -> Event {
    let kind = match tracked.kind {
        Kind::Open => EventKind::Opened,
        Kind::Click => EventKind::Clicked,
    };
    let copy = &tracked.copy;
    Event {
        event_id: ulid::Ulid::new().to_string(),
        kind: kind.into(),
        message_id: copy.message_id.clone(),
        tenant: copy.tenant.clone(),
        campaign: copy.campaign.clone(),
        recipient: copy.recipient.clone(),
        at: Some(SystemTime::now().into()),
        engagement: Some(Engagement {
            user_agent: tracking::kept_user_agent(user_agent),
            machine: tracking::is_machine(user_agent),
            url: tracked.url.clone(),
        }),
        ..Default::default()
    }
}
