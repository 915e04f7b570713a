//! The JSON body of a post: one event (docs/webhooks.md#the-body). The
//! body of an event is the same on every attempt, so `id` de-duplicates
//! repeated deliveries.

use serde_json::{Map, Value, json};
use sluice_proto::v1::{BounceClass, Event};

/// The lower-case name of an event kind, as `type` carries it.
pub fn kind_name(kind: i32) -> String {
    sluice_proto::event_kind_name(kind)
}

fn class_name(class: i32) -> Option<String> {
    match BounceClass::try_from(class) {
        Ok(BounceClass::Unspecified) | Err(_) => None,
        Ok(c) => Some(
            c.as_str_name()
                .trim_start_matches("BOUNCE_CLASS_")
                .to_ascii_lowercase(),
        ),
    }
}

/// Puts `value` under `key` unless it is empty.
fn put_text(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.into(), value.into());
    }
}

/// The body posted for `event`.
pub fn render(event: &Event) -> Vec<u8> {
    let mut map = Map::new();
    map.insert("id".into(), event.event_id.clone().into());
    map.insert("type".into(), kind_name(event.kind).into());
    if let Some(at) = &event.at {
        map.insert("at".into(), at.to_string().into());
    }
    map.insert("tenant".into(), event.tenant.clone().into());
    map.insert("message_id".into(), event.message_id.clone().into());
    put_text(&mut map, "recipient", &event.recipient);
    put_text(&mut map, "campaign", &event.campaign);
    put_text(&mut map, "list", &event.list);
    put_text(&mut map, "pool", &event.pool);
    map.insert("attempt".into(), event.attempt.into());
    if let Some(reply) = &event.reply {
        map.insert(
            "reply".into(),
            json!({"code": reply.code, "enhanced_code": reply.enhanced_code, "text": reply.text}),
        );
    }
    if let Some(class) = class_name(event.bounce_class) {
        map.insert("bounce_class".into(), class.into());
    }
    put_text(&mut map, "source_ip", &event.source_ip);
    put_text(&mut map, "site", &event.site);
    put_text(&mut map, "mx_host", &event.mx_host);
    if let Some(next) = &event.next_attempt_at {
        map.insert("next_attempt_at".into(), next.to_string().into());
    }
    if let Some(e) = &event.engagement {
        map.insert(
            "engagement".into(),
            json!({"user_agent": e.user_agent, "machine": e.machine, "url": e.url}),
        );
    }
    if !event.tags.is_empty() {
        let tags: Map<String, Value> = event
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        map.insert("tags".into(), tags.into());
    }
    serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use sluice_proto::v1::{EventKind, SmtpReply};

    use super::*;

    #[test]
    fn a_bounce_reads_as_documented() {
        let event = Event {
            event_id: "01JE0000000000000000000000".into(),
            kind: EventKind::Bounced.into(),
            message_id: "m1".into(),
            tenant: "acme".into(),
            recipient: "bob@example.com".into(),
            attempt: 2,
            at: Some(prost_types::Timestamp {
                seconds: 1_764_583_200,
                nanos: 0,
            }),
            reply: Some(SmtpReply {
                code: 550,
                enhanced_code: "5.1.1".into(),
                text: "no such user".into(),
                synthetic: false,
            }),
            bounce_class: BounceClass::BadMailbox.into(),
            tags: [("list".to_owned(), "news".to_owned())].into(),
            ..Default::default()
        };
        let body: Value = serde_json::from_slice(&render(&event)).unwrap();
        assert_eq!(body["id"], "01JE0000000000000000000000");
        assert_eq!(body["type"], "bounced");
        assert_eq!(body["at"], "2025-12-01T10:00:00Z");
        assert_eq!(body["reply"]["enhanced_code"], "5.1.1");
        assert_eq!(body["bounce_class"], "bad_mailbox");
        assert_eq!(body["tags"]["list"], "news");
        assert!(body.get("campaign").is_none(), "empty fields are left out");
        assert_eq!(render(&event), render(&event), "the same bytes every time");
    }

    #[test]
    fn a_click_carries_its_engagement() {
        let event = Event {
            event_id: "01JE0000000000000000000001".into(),
            kind: EventKind::Clicked.into(),
            message_id: "m1".into(),
            tenant: "acme".into(),
            engagement: Some(sluice_proto::v1::Engagement {
                user_agent: "Mozilla/5.0 (X11)".into(),
                machine: false,
                url: "https://shop.example/sale".into(),
            }),
            ..Default::default()
        };
        let body: Value = serde_json::from_slice(&render(&event)).unwrap();
        assert_eq!(body["type"], "clicked");
        assert_eq!(body["engagement"]["url"], "https://shop.example/sale");
        assert_eq!(body["engagement"]["machine"], false);
        assert_eq!(body["engagement"]["user_agent"], "Mozilla/5.0 (X11)");
    }

    #[test]
    fn kinds_are_named_in_lower_case() {
        assert_eq!(
            kind_name(EventKind::WebhookDisabled.into()),
            "webhook_disabled"
        );
        assert_eq!(kind_name(99), "99");
    }
}
