//! Sluice wire types, generated from `proto/sluice/v1/*.proto`.
//!
//! Every service depends on this crate and on nothing else for its wire
//! format: the Kafka payloads ([`v1::Envelope`], [`v1::Event`]) and the gRPC
//! services (`Ingest`, `Control`, `Query`) with their clients and servers.

/// The encoded `FileDescriptorSet` of every `sluice.v1` proto, which the
/// gRPC listeners serve through server reflection (`grpcurl`, Postman).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sluice_v1_descriptor.bin"));

/// An event kind's name in JSON and on command lines: the enum value's
/// name without its prefix, lower case (`delivered`, `webhook_disabled`);
/// a number the enum does not know stays a number.
pub fn event_kind_name(kind: i32) -> String {
    v1::EventKind::try_from(kind).map_or_else(
        |_| kind.to_string(),
        |k| {
            k.as_str_name()
                .trim_start_matches("EVENT_KIND_")
                .to_ascii_lowercase()
        },
    )
}

/// The event kind [`event_kind_name`] gives `name` (any case); `None` for
/// another name and for `unspecified`.
pub fn event_kind_named(name: &str) -> Option<v1::EventKind> {
    if name.to_ascii_uppercase().starts_with("EVENT_KIND_") {
        return None;
    }
    v1::EventKind::from_str_name(&format!("EVENT_KIND_{}", name.to_ascii_uppercase()))
        .filter(|k| *k != v1::EventKind::Unspecified)
}

/// Version 1 of the Sluice protocol (`package sluice.v1`).
pub mod v1 {
    #![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]
    tonic::include_proto!("sluice.v1");
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::v1::{Envelope, Event, EventKind, SmtpReply};
    use super::{event_kind_name, event_kind_named};

    #[test]
    fn event_kinds_are_named_both_ways() {
        for kind in 1..=11 {
            let name = event_kind_name(kind);
            assert_eq!(event_kind_named(&name).map(i32::from), Some(kind), "{name}");
        }
        assert_eq!(
            event_kind_name(EventKind::WebhookDisabled.into()),
            "webhook_disabled"
        );
        assert_eq!(event_kind_named("Bounced"), Some(EventKind::Bounced));
        assert_eq!(event_kind_name(99), "99");
        for bad in ["unspecified", "EVENT_KIND_BOUNCED", "sent", ""] {
            assert_eq!(event_kind_named(bad), None, "{bad}");
        }
    }

    #[test]
    fn envelope_round_trips_through_protobuf() {
        let envelope = Envelope {
            message_id: "01JDQ3Z5".into(),
            tenant: "acme".into(),
            pool: "shared".into(),
            recipient: "bob@example.com".into(),
            content: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
            attempt: 2,
            tags: [("campaign".to_owned(), "spring".to_owned())].into(),
            ..Default::default()
        };
        let bytes = envelope.encode_to_vec();
        assert_eq!(Envelope::decode(bytes.as_slice()).unwrap(), envelope);
    }

    #[test]
    fn event_carries_the_smtp_reply() {
        let event = Event {
            kind: EventKind::Deferred.into(),
            reply: Some(SmtpReply {
                code: 421,
                enhanced_code: "4.7.28".into(),
                text: "rate limited".into(),
                synthetic: false,
            }),
            ..Default::default()
        };
        let decoded = Event::decode(event.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.kind(), EventKind::Deferred);
        assert_eq!(decoded.reply.unwrap().enhanced_code, "4.7.28");
    }

    #[test]
    fn malformed_bytes_are_an_error_not_a_panic() {
        assert!(Envelope::decode(&[0xff, 0xff, 0xff][..]).is_err());
    }
}
