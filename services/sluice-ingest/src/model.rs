//! The submission every front door converts its input into.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// One message for one or more recipients, independent of the front door.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// RFC 5322 From; for raw messages may be empty (the From header is used).
    pub from: String,
    /// Recipients, each with its own template variables.
    pub recipients: Vec<RecipientInput>,
    /// What to send.
    pub content: Content,
    /// Pool; empty means the tenant's default.
    pub pool: String,
    /// Campaign id for stats, may be empty.
    pub campaign: String,
    /// Labels copied into every envelope and event.
    pub tags: BTreeMap<String, String>,
    /// Scheduled send time.
    pub send_at: Option<SystemTime>,
    /// Idempotency key, may be empty.
    pub idempotency_key: String,
    /// `sluice.v1.Priority` as its number.
    pub priority: i32,
    /// Extra headers of templated messages.
    pub headers: BTreeMap<String, String>,
    /// How the caller asked for the submission to be traced.
    pub trace: TraceRequest,
    /// Where a delivery status notification goes if a recipient's copy
    /// finally fails: the SMTP MAIL FROM when the tenant enabled `smtp_dsn`;
    /// empty otherwise (`Envelope.dsn_to`).
    pub dsn_to: String,
    /// What to track in the HTML part (templated messages only).
    pub tracking: TrackingRequest,
    /// The tenant's list the message belongs to; empty: none
    /// (`SendRequest.list`).
    pub list: String,
}

/// Open and click tracking asked for by a submission
/// (`sluice.v1.Tracking`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingRequest {
    #[serde(default)]
    pub opens: bool,
    #[serde(default)]
    pub clicks: bool,
}

impl TrackingRequest {
    /// True when anything is to be tracked.
    pub fn any(&self) -> bool {
        self.opens || self.clicks
    }
}

/// The caller's trace context and wishes (docs/observability.md#traces).
#[derive(Debug, Clone, Default)]
pub struct TraceRequest {
    /// The caller's W3C `traceparent`, if it sent one: Sluice's spans join
    /// the caller's trace.
    pub parent: Option<Vec<u8>>,
    /// The caller asked for this submission to be traced whatever the
    /// sampling ratio (`sluice-trace: 1`).
    pub force: bool,
}

impl TraceRequest {
    /// From HTTP headers.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Self {
        Self::from_fields(|name| headers.get(name).map(|v| v.as_bytes()))
    }

    /// From gRPC metadata.
    pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Self {
        Self::from_fields(|name| metadata.get(name).map(|v| v.as_bytes()))
    }

    fn from_fields<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Self {
        use sluice_node::trace::{FORCE_HEADER, HEADER, enabled, wants_trace};
        if !enabled() {
            return Self::default();
        }
        Self {
            parent: get(HEADER).map(<[u8]>::to_vec),
            force: wants_trace(get(FORCE_HEADER)),
        }
    }
}

/// One recipient.
#[derive(Debug, Clone, Default)]
pub struct RecipientInput {
    /// RFC 5321 address.
    pub address: String,
    /// Display name for the To header of templated messages.
    pub name: String,
    /// Template variables of this recipient.
    pub substitutions: BTreeMap<String, String>,
}

/// The body of a submission.
#[derive(Debug, Clone)]
pub enum Content {
    /// Rendered per recipient with minijinja.
    Template {
        subject: String,
        text: String,
        html: String,
    },
    /// A complete RFC 5322 message.
    Raw(Vec<u8>),
}

impl Default for Content {
    fn default() -> Self {
        Self::Raw(Vec::new())
    }
}
