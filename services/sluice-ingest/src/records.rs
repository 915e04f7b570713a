//! The Kafka payloads ingest writes: one `Envelope` per recipient and one
//! `Event` (accepted or suppressed) per recipient.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use prost::Message;
use sluice_proto::v1::{Envelope, Event, EventKind};

use crate::model::Submission;
use crate::publish::OutRecord;

/// What every record of one submission shares.
pub struct Common<'a> {
    pub tenant: &'a str,
    pub pool: &'a str,
    pub submission: &'a Submission,
    pub now: SystemTime,
    pub lifetime: Duration,
}

impl Common<'_> {
    fn tags(&self) -> HashMap<String, String> {
        self.submission
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The envelope of one recipient's signed copy.
    pub fn envelope(
        &self,
        topic: String,
        message_id: &str,
        recipient: &str,
        return_path: String,
        content: Vec<u8>,
    ) -> OutRecord {
        let not_before = self.submission.send_at.unwrap_or(self.now).max(self.now);
        let envelope = Envelope {
            message_id: message_id.to_owned(),
            tenant: self.tenant.to_owned(),
            pool: self.pool.to_owned(),
            campaign: self.submission.campaign.clone(),
            return_path,
            recipient: recipient.to_owned(),
            content,
            attempt: 0,
            not_before: Some(not_before.into()),
            expires_at: Some(
                not_before
                    .checked_add(self.lifetime)
                    .unwrap_or(not_before)
                    .into(),
            ),
            priority: self.submission.priority,
            tags: self.tags(),
            accepted_at: Some(self.now.into()),
            dsn_to: self.submission.dsn_to.clone(),
            ..Default::default()
        };
        OutRecord {
            topic,
            key: message_id.to_owned(),
            payload: envelope.encode_to_vec(),
            marks_durable: true,
        }
    }

    /// An accepted or suppressed event.
    pub fn event(
        &self,
        topic: &str,
        kind: EventKind,
        message_id: &str,
        recipient: &str,
    ) -> OutRecord {
        let event = Event {
            event_id: ulid::Ulid::new().to_string(),
            kind: kind.into(),
            message_id: message_id.to_owned(),
            tenant: self.tenant.to_owned(),
            pool: self.pool.to_owned(),
            campaign: self.submission.campaign.clone(),
            list: self.submission.list.clone(),
            recipient: recipient.to_owned(),
            attempt: 0,
            at: Some(self.now.into()),
            tags: self.tags(),
            ..Default::default()
        };
        OutRecord {
            topic: topic.to_owned(),
            key: message_id.to_owned(),
            payload: event.encode_to_vec(),
            marks_durable: kind == EventKind::Suppressed,
        }
    }
}
