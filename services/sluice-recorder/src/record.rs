//! What one event writes, as plain data: counter deltas and their keys,
//! buckets, the de-duplication key, the suppression it causes. Pure.

use sluice_proto::v1::{BounceClass, Event, EventKind};

use crate::time::{day_of, hour_of};

/// Counter columns of the counter part tables, in order.
pub const COLUMNS: [&str; 11] = [
    "accepted",
    "delivered",
    "deferred",
    "bounced",
    "hard_bounced",
    "expired",
    "suppressed",
    "complained",
    "opened",
    "clicked",
    "late_bounced",
];

/// How many of [`COLUMNS`] the counter tables written before schema
/// version 12 have (and the embedded ledger's rows of that time): the
/// rest were added later and read as 0 there.
pub const LEGACY_COLUMNS: usize = 8;

/// Amounts to add to each column of [`COLUMNS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deltas(pub [i64; 11]);

impl Deltas {
    /// Adds `other` column by column.
    pub fn add(&mut self, other: &Deltas) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// Reads a column by name.
    pub fn get(&self, column: &str) -> i64 {
        COLUMNS
            .iter()
            .position(|c| *c == column)
            .map_or(0, |i| self.0[i])
    }
}

/// Which counter table a key addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    Daily,
    Hourly,
}

/// One row of a counter table: partition `(scope, key, day)`, then `hour`
/// (hourly only, empty for daily) and `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub granularity: Granularity,
    pub scope: &'static str,
    pub key: String,
    pub day: String,
    pub hour: String,
    pub detail: String,
}

/// Where a record sits in the events topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// One counter row's share from one events partition: the sum of every
/// counted event of that partition up to offset `through`, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub deltas: Deltas,
    pub through: i64,
}

impl Default for Part {
    /// Nothing yet: every offset (from 0) is still to be added.
    fn default() -> Self {
        Self {
            deltas: Deltas::default(),
            through: -1,
        }
    }
}

impl Part {
    /// Adds an event at `offset` unless this part already holds it; true
    /// when it was added.
    pub fn take(&mut self, offset: i64, deltas: &Deltas) -> bool {
        if offset <= self.through {
            return false;
        }
        self.deltas.add(deltas);
        true
    }
}

/// True for bounces that mean the address will never work: suppress it and
/// count it as a hard bounce.
pub fn is_hard_bounce(event: &Event) -> bool {
    event.kind() == EventKind::Bounced
        && matches!(
            event.bounce_class(),
            BounceClass::BadMailbox | BounceClass::BadDomain
        )
}

/// Counter deltas of one event; all zero for kinds that are not counted
/// (unsubscribed, webhook notices, unspecified). Opens and clicks count
/// once per message (the de-duplication key has no room for a second).
pub fn deltas(event: &Event) -> Deltas {
    let mut d = [0_i64; 11];
    let column = match event.kind() {
        EventKind::Accepted => Some(0),
        EventKind::Delivered => Some(1),
        EventKind::Deferred => Some(2),
        EventKind::Bounced => Some(3),
        EventKind::Expired => Some(5),
        EventKind::Suppressed => Some(6),
        EventKind::Complained => Some(7),
        EventKind::Opened => Some(8),
        EventKind::Clicked => Some(9),
        _ => None,
    };
    if let Some(i) = column {
        d[i] = 1;
    }
    if is_hard_bounce(event) {
        d[4] = 1;
    }
    // A bounce reported after the message was handed over (by mail to the
    // return path): counted as a bounce and, apart, as late, so reputation
    // does not count the message as sent twice (delivered and bounced).
    if event.kind() == EventKind::Bounced && event.attempt == sluice_node::verp::LATE_ATTEMPT {
        d[10] = 1;
    }
    Deltas(d)
}

/// Event time in Unix seconds; `fallback` when the event carries none.
pub fn event_secs(event: &Event, fallback: i64) -> i64 {
    event.at.as_ref().map_or(fallback, |t| t.seconds)
}

/// Event time in Unix milliseconds; `fallback` seconds when absent.
pub fn event_millis(event: &Event, fallback: i64) -> i64 {
    event.at.as_ref().map_or(fallback * 1000, |t| {
        t.seconds * 1000 + i64::from(t.nanos / 1_000_000)
    })
}

/// Every counter row an event adds to.
pub fn counter_keys(event: &Event, fallback_secs: i64) -> Vec<CounterKey> {
    let secs = event_secs(event, fallback_secs);
    let (day, hour) = (day_of(secs), hour_of(secs));
    let key = |granularity, scope, key: &str, detail: &str| CounterKey {
        granularity,
        scope,
        key: key.to_owned(),
        day: day.clone(),
        hour: match granularity {
            Granularity::Daily => String::new(),
            Granularity::Hourly => hour.clone(),
        },
        detail: detail.to_owned(),
    };
    let (ip, site) = (event.source_ip.as_str(), event.site.as_str());
    let mut keys = Vec::with_capacity(6);
    if !ip.is_empty() && !site.is_empty() {
        keys.push(key(Granularity::Daily, "ip", ip, site));
        keys.push(key(Granularity::Daily, "site", site, ip));
        keys.push(key(Granularity::Hourly, "ip", ip, site));
    }
    if !event.tenant.is_empty() {
        keys.push(key(Granularity::Daily, "tenant", &event.tenant, ""));
        keys.push(key(Granularity::Hourly, "tenant", &event.tenant, ""));
    }
    if !event.campaign.is_empty() {
        let campaign = campaign_key(&event.tenant, &event.campaign);
        keys.push(key(Granularity::Daily, "campaign", &campaign, ""));
    }
    keys
}

/// The key of a campaign's counters: `<tenant>/<campaign>`, so two
/// tenants' campaigns of one name never share counters and a tenant reads
/// its own by the campaign's name. Events without a tenant keep the bare
/// name (none are counted so: the recorder completes them first).
pub fn campaign_key(tenant: &str, campaign: &str) -> String {
    if tenant.is_empty() {
        campaign.to_owned()
    } else {
        format!("{tenant}/{campaign}")
    }
}

/// The attempt number of the claim "this message was delivered, whatever
/// the attempt": a second `delivered` event of a message finds it held.
pub const ANY_ATTEMPT: u32 = u32::MAX;

/// The recorder's de-duplication key: (message id, attempt, kind), with
/// [`ANY_ATTEMPT`] for `delivered` (a message is delivered once, whatever
/// the attempt: a second delivery is a repeat).
pub fn dedup_key(event: &Event) -> (String, u32, i32) {
    let attempt = match event.kind() {
        EventKind::Delivered => ANY_ATTEMPT,
        _ => event.attempt,
    };
    (event.message_id.clone(), attempt, event.kind)
}

/// The form a suppressed address is stored and looked up in: lowercase,
/// as ingest compares its configured list.
pub fn suppression_address(address: &str) -> String {
    address.to_lowercase()
}

/// The suppression an event causes, as `(tenant, address, reason)`; the
/// address in [`suppression_address`] form, or for an unsubscribe from a
/// list the list's own form (`list:<list> <address>`, which only
/// submissions naming the list are checked against).
pub fn suppression(event: &Event) -> Option<(&str, String, &'static str)> {
    let reason = match event.kind() {
        _ if is_hard_bounce(event) => "hard_bounce",
        EventKind::Complained => "complaint",
        EventKind::Unsubscribed => "unsubscribe",
        _ => return None,
    };
    if event.tenant.is_empty() || event.recipient.is_empty() {
        return None;
    }
    let address = match event.list.as_str() {
        list if !list.is_empty() && event.kind() == EventKind::Unsubscribed => {
            sluice_links::unsubscribe::list_suppression(list, &event.recipient)
        }
        _ => suppression_address(&event.recipient),
    };
    Some((&event.tenant, address, reason))
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::*;

    fn event(kind: EventKind, class: BounceClass) -> Event {
        Event {
            kind: kind.into(),
            bounce_class: class.into(),
            message_id: "m1".into(),
            tenant: "acme".into(),
            campaign: "spring".into(),
            recipient: "bob@example.com".into(),
            source_ip: "192.0.2.1".into(),
            site: "google".into(),
            at: Some(Timestamp {
                seconds: 1_709_211_900,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hard_bounce_counts_twice_and_suppresses() {
        let e = event(EventKind::Bounced, BounceClass::BadMailbox);
        let d = deltas(&e);
        assert_eq!((d.get("bounced"), d.get("hard_bounced")), (1, 1));
        assert_eq!(
            suppression(&e),
            Some(("acme", "bob@example.com".to_owned(), "hard_bounce"))
        );
        let shouting = Event {
            recipient: "Bob@Example.COM".into(),
            ..e
        };
        assert_eq!(
            suppression(&shouting).map(|s| s.1),
            Some("bob@example.com".to_owned()),
            "stored lowercase"
        );
    }

    #[test]
    fn an_unsubscribe_from_a_list_suppresses_for_that_list_only() {
        let mut e = event(EventKind::Unsubscribed, BounceClass::Unspecified);
        e.recipient = "Bob@Example.org".into();
        assert_eq!(
            suppression(&e),
            Some(("acme", "bob@example.org".to_owned(), "unsubscribe"))
        );
        e.list = "Weekly".into();
        assert_eq!(
            suppression(&e),
            Some((
                "acme",
                "list:weekly bob@example.org".to_owned(),
                "unsubscribe"
            ))
        );
        // A complaint about a list's message still suppresses everything.
        let mut c = event(EventKind::Complained, BounceClass::Unspecified);
        c.list = "weekly".into();
        assert_eq!(
            suppression(&c).map(|s| s.1),
            Some(c.recipient.to_lowercase())
        );
    }

    #[test]
    fn soft_bounce_is_counted_but_not_suppressed() {
        let e = event(EventKind::Bounced, BounceClass::MailboxFull);
        let d = deltas(&e);
        assert_eq!((d.get("bounced"), d.get("hard_bounced")), (1, 0));
        assert_eq!(suppression(&e), None);
    }

    #[test]
    fn complaint_suppresses_and_opens_and_clicks_count_in_their_columns() {
        let c = event(EventKind::Complained, BounceClass::Unspecified);
        assert_eq!(suppression(&c).map(|s| s.2), Some("complaint"));
        let opened = deltas(&event(EventKind::Opened, BounceClass::Unspecified));
        assert_eq!((opened.get("opened"), opened.get("clicked")), (1, 0));
        assert_eq!(opened.0.iter().sum::<i64>(), 1);
        let clicked = deltas(&event(EventKind::Clicked, BounceClass::Unspecified));
        assert_eq!((clicked.get("opened"), clicked.get("clicked")), (0, 1));
        let mut late = event(EventKind::Bounced, BounceClass::BadMailbox);
        late.attempt = sluice_node::verp::LATE_ATTEMPT;
        let late = deltas(&late);
        let columns = ["bounced", "hard_bounced", "late_bounced"].map(|c| late.get(c));
        assert_eq!(columns, [1, 1, 1]);
        let sender_bounce = deltas(&event(EventKind::Bounced, BounceClass::BadMailbox));
        assert_eq!(sender_bounce.get("late_bounced"), 0);
        assert_eq!(
            suppression(&event(EventKind::Opened, BounceClass::Unspecified)),
            None
        );
        assert_eq!(
            deltas(&event(EventKind::Unsubscribed, BounceClass::Unspecified)),
            Deltas::default()
        );
    }

    #[test]
    fn keys_cover_path_site_tenant_and_campaign_in_the_event_hour() {
        let keys = counter_keys(&event(EventKind::Delivered, BounceClass::Unspecified), 0);
        let scopes: Vec<_> = keys.iter().map(|k| (k.granularity, k.scope)).collect();
        assert_eq!(keys.len(), 6, "{scopes:?}");
        assert!(keys.iter().all(|k| k.day == "2024-02-29"));
        let hourly = keys
            .iter()
            .find(|k| k.granularity == Granularity::Hourly)
            .expect("hourly");
        assert_eq!(
            (hourly.key.as_str(), hourly.detail.as_str()),
            ("192.0.2.1", "google")
        );
        assert_eq!(hourly.hour, "2024-02-29T13");
        let campaign = keys
            .iter()
            .find(|k| k.scope == "campaign")
            .expect("campaign");
        assert_eq!(
            campaign.key, "acme/spring",
            "a campaign is counted within its tenant"
        );
    }

    #[test]
    fn accepted_events_without_a_path_count_for_tenant_and_campaign_only() {
        let mut e = event(EventKind::Accepted, BounceClass::Unspecified);
        e.source_ip.clear();
        e.site.clear();
        let scopes: Vec<_> = counter_keys(&e, 0).iter().map(|k| k.scope).collect();
        assert_eq!(scopes, ["tenant", "tenant", "campaign"]);
    }
}
