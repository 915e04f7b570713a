//! What the events topic says happened: counts per source IP and site, the
//! final events of every message, and attempts per (IP, site, UTC day) for
//! the warm-up check. Pure: events in, counts out.

use std::collections::{BTreeMap, HashMap};

use sluice_proto::v1::{Event, EventKind};

/// Outcome counts of one (source IP, site) pair, or of a whole IP or site.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub expired: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.delivered += other.delivered;
        self.deferred += other.deferred;
        self.bounced += other.bounced;
        self.expired += other.expired;
    }
}

/// Everything the report needs from the events.
#[derive(Debug, Default)]
pub struct Tally {
    /// `accepted` events seen (one per recipient ingest published).
    pub accepted: u64,
    /// Final events (delivered, bounced, expired) by message id, in order.
    pub finals: HashMap<String, Vec<EventKind>>,
    /// Outcomes by (source IP, site); events without a source IP (e.g. a
    /// record that could not be routed) under an empty IP.
    pub by_path: BTreeMap<(String, String), Counts>,
    /// Delivery attempts (delivered, deferred, bounced or expired from an
    /// SMTP attempt) by (source IP, site, UTC day number).
    pub attempts: BTreeMap<(String, String, u32), u64>,
    /// Every event read, for the progress line.
    pub events: u64,
}

/// Whether the event ends its message's life.
pub fn is_final(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Delivered | EventKind::Bounced | EventKind::Expired
    )
}

impl Tally {
    /// Counts one event.
    pub fn add(&mut self, e: &Event) {
        self.events += 1;
        let kind = e.kind();
        let mut c = Counts::default();
        match kind {
            EventKind::Accepted => {
                self.accepted += 1;
                return;
            }
            EventKind::Delivered => c.delivered = 1,
            EventKind::Deferred => c.deferred = 1,
            EventKind::Bounced => c.bounced = 1,
            EventKind::Expired => c.expired = 1,
            _ => return,
        }
        if is_final(kind) {
            self.finals
                .entry(e.message_id.clone())
                .or_default()
                .push(kind);
        }
        let path = (e.source_ip.clone(), e.site.clone());
        self.by_path.entry(path).or_default().add(c);
        if !e.source_ip.is_empty() {
            let day =
                e.at.as_ref()
                    .map_or(0, |t| (t.seconds.max(0) / 86_400) as u32);
            *self
                .attempts
                .entry((e.source_ip.clone(), e.site.clone(), day))
                .or_default() += 1;
        }
    }

    /// Messages with at least one final event.
    pub fn finished(&self) -> u64 {
        self.finals.len() as u64
    }

    /// Outcome counts over everything, for the progress line.
    pub fn totals(&self) -> Counts {
        let mut t = Counts::default();
        for c in self.by_path.values() {
            t.add(*c);
        }
        t
    }

    /// Outcome counts of one source IP over all sites.
    pub fn by_ip(&self, ip: &str) -> Counts {
        let mut t = Counts::default();
        for ((i, _), c) in &self.by_path {
            if i == ip {
                t.add(*c);
            }
        }
        t
    }

    /// Outcome counts of one site over all source IPs.
    pub fn by_site(&self, site: &str) -> Counts {
        let mut t = Counts::default();
        for ((_, s), c) in &self.by_path {
            if s == site {
                t.add(*c);
            }
        }
        t
    }

    /// Message ids whose final event is `delivered` (the last final event).
    pub fn delivered_ids(&self) -> impl Iterator<Item = &str> {
        self.finals
            .iter()
            .filter(|(_, kinds)| kinds.last() == Some(&EventKind::Delivered))
            .map(|(id, _)| id.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event on UTC day 20,000 (the timestamp type is inferred, so the
    /// crate needs no prost-types).
    pub(crate) fn event(kind: EventKind, id: &str, ip: &str, site: &str) -> Event {
        let mut e = Event {
            kind: kind.into(),
            message_id: id.into(),
            source_ip: ip.into(),
            site: site.into(),
            at: Some(Default::default()),
            ..Default::default()
        };
        if let Some(at) = e.at.as_mut() {
            at.seconds = 86_400 * 20_000 + 5;
        }
        e
    }

    #[test]
    fn counts_outcomes_finals_and_attempts() {
        let mut t = Tally::default();
        t.add(&event(EventKind::Accepted, "m1", "", ""));
        t.add(&event(EventKind::Deferred, "m1", "127.0.0.20", "gmail"));
        t.add(&event(EventKind::Delivered, "m1", "127.0.0.21", "gmail"));
        t.add(&event(EventKind::Bounced, "m2", "127.0.0.20", "yahoo"));
        t.add(&event(EventKind::Bounced, "m3", "", ""));
        assert_eq!(t.accepted, 1);
        assert_eq!(t.finished(), 3);
        assert_eq!(t.by_ip("127.0.0.20").deferred, 1);
        assert_eq!(t.by_ip("127.0.0.20").bounced, 1);
        assert_eq!(t.by_site("gmail").delivered, 1);
        assert_eq!(t.attempts.len(), 3, "no attempt without a source IP");
        assert_eq!(
            t.attempts[&("127.0.0.20".into(), "gmail".into(), 20_000)],
            1
        );
        assert_eq!(t.delivered_ids().collect::<Vec<_>>(), vec!["m1"]);
    }
}
