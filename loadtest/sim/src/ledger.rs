//! What the simulator saw: accepted messages and per-source counters.

use std::collections::BTreeMap;
use std::net::IpAddr;

use sluice_smtp::Reply;

use crate::reply::LimitKind;
use crate::report::AcceptedMessage;

/// Counters for one (provider, source IP).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SourceCounts {
    pub connections: u64,
    pub accepted: u64,
    pub deferred: u64,
    pub rejected: u64,
    pub violations: BTreeMap<LimitKind, u64>,
    pub peak_per_minute: u32,
}

/// Every accepted message and every counter, shared by all providers.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub messages: Vec<AcceptedMessage>,
    pub sources: BTreeMap<(String, IpAddr), SourceCounts>,
    /// Feedback waiting for its time (and for an MX to send it to).
    pub feedback_due: Vec<crate::feedback::Due>,
    /// Where feedback goes, once known.
    pub feedback_mx: Option<std::net::SocketAddr>,
    /// Feedback mailed, with the MX's answer.
    pub feedback_sent: Vec<crate::report::SentFeedback>,
    /// Accepted messages' recipients and bytes, from providers that keep them.
    pub bodies: Vec<(Vec<String>, Vec<u8>)>,
}

impl Ledger {
    fn counts(&mut self, provider: &str, ip: IpAddr) -> &mut SourceCounts {
        self.sources.entry((provider.to_string(), ip)).or_default()
    }

    /// A connection was accepted (whether or not it got a banner).
    pub fn connection(&mut self, provider: &str, ip: IpAddr) {
        self.counts(provider, ip).connections += 1;
    }

    /// A policy reply (limit, greylist, unknown user, random failure...) was
    /// given: 4xx counts as deferred, 5xx as rejected.
    pub fn refused(&mut self, provider: &str, ip: IpAddr, reply: &Reply) {
        let counts = self.counts(provider, ip);
        if reply.is_transient() {
            counts.deferred += 1;
        } else if reply.is_permanent() {
            counts.rejected += 1;
        }
    }

    /// The client went past a limit.
    pub fn violation(&mut self, provider: &str, ip: IpAddr, kind: LimitKind) {
        *self
            .counts(provider, ip)
            .violations
            .entry(kind)
            .or_default() += 1;
    }

    /// The per-minute window of `ip` now holds `count` messages.
    pub fn observe_rate(&mut self, provider: &str, ip: IpAddr, count: u32) {
        let counts = self.counts(provider, ip);
        counts.peak_per_minute = counts.peak_per_minute.max(count);
    }

    /// A message was accepted with `250` after DATA.
    pub fn accepted(&mut self, message: AcceptedMessage) {
        self.counts(&message.provider, message.source_ip).accepted += 1;
        self.messages.push(message);
    }
}
