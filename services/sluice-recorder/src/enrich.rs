//! Events that arrive knowing only their message: the inbound role's
//! bounces (a report names the message through its VERP address, not the
//! tenant or where the message went). Before such an event is written, it
//! takes the tenant, pool, campaign, source IP, site, MX and tags from the
//! message's own history, so it counts, suppresses and scores like the
//! sender's events.

use sluice_proto::v1::Event;

/// Whether `event` needs its message's history: it names a message but no
/// tenant.
pub fn needs_history(event: &Event) -> bool {
    event.tenant.is_empty() && !event.message_id.is_empty()
}

/// Fills what `event` lacks from the latest event in `history` that names
/// a tenant (a delivery attempt's, preferably: it says where the message
/// went). Returns whether anything was found.
pub fn from_history(event: &mut Event, history: &[Event]) -> bool {
    let Some(known) = history
        .iter()
        .rev()
        .filter(|e| !e.tenant.is_empty())
        .max_by_key(|e| !e.source_ip.is_empty())
    else {
        return false;
    };
    event.tenant.clone_from(&known.tenant);
    event.pool.clone_from(&known.pool);
    event.campaign.clone_from(&known.campaign);
    event.tags.clone_from(&known.tags);
    if event.recipient.is_empty() {
        event.recipient.clone_from(&known.recipient);
    }
    // Only ingest's events name the list: an unsubscribe by mail is scoped
    // like the message's own link.
    if event.list.is_empty()
        && let Some(listed) = history.iter().find(|e| !e.list.is_empty())
    {
        event.list.clone_from(&listed.list);
    }
    if event.source_ip.is_empty() {
        event.source_ip.clone_from(&known.source_ip);
        event.site.clone_from(&known.site);
        event.mx_host.clone_from(&known.mx_host);
    }
    true
}

#[cfg(test)]
mod tests {
    use sluice_proto::v1::EventKind;

    use super::*;

    fn past(kind: EventKind, source_ip: &str) -> Event {
        Event {
            kind: kind.into(),
            message_id: "m1".into(),
            tenant: "acme".into(),
            pool: "shared".into(),
            campaign: "spring".into(),
            recipient: "bob@example.org".into(),
            source_ip: source_ip.into(),
            site: if source_ip.is_empty() { "" } else { "gmail" }.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_late_bounce_takes_the_delivery_attempts_tenant_and_path() {
        let history = [
            past(EventKind::Accepted, ""),
            past(EventKind::Delivered, "192.0.2.7"),
        ];
        let mut late = Event {
            kind: EventKind::Bounced.into(),
            message_id: "m1".into(),
            ..Default::default()
        };
        assert!(needs_history(&late));
        assert!(from_history(&mut late, &history));
        assert_eq!(late.tenant, "acme");
        assert_eq!(late.recipient, "bob@example.org");
        assert_eq!(
            (late.source_ip.as_str(), late.site.as_str()),
            ("192.0.2.7", "gmail")
        );
        assert!(!needs_history(&late));
    }

    #[test]
    fn an_unsubscribe_by_mail_takes_the_messages_list() {
        let accepted = Event {
            list: "weekly".into(),
            ..past(EventKind::Accepted, "")
        };
        let history = [accepted, past(EventKind::Delivered, "192.0.2.7")];
        let mut mailed = Event {
            kind: EventKind::Unsubscribed.into(),
            message_id: "m1".into(),
            ..Default::default()
        };
        assert!(from_history(&mut mailed, &history));
        assert_eq!(
            (mailed.tenant.as_str(), mailed.list.as_str()),
            ("acme", "weekly")
        );
    }

    #[test]
    fn the_reports_recipient_is_kept_and_an_unknown_message_changes_nothing() {
        let mut late = Event {
            message_id: "m1".into(),
            recipient: "Bob@Example.org".into(),
            ..Default::default()
        };
        assert!(from_history(&mut late, &[past(EventKind::Accepted, "")]));
        assert_eq!(late.recipient, "Bob@Example.org");
        let mut orphan = Event {
            message_id: "m2".into(),
            ..Default::default()
        };
        assert!(!from_history(&mut orphan, &[]));
        assert!(orphan.tenant.is_empty());
    }
}
