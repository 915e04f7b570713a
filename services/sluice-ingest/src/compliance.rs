//! Headers and addresses that large mailbox providers expect from a bulk
//! sender: one-click unsubscribe (RFC 8058) with an HMAC-signed URL and
//! Feedback-ID (the signed VERP return path is `sluice_node::verp`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// Signs and checks unsubscribe tokens.
#[derive(Debug, Clone)]
pub struct Unsubscribe {
    base_url: String,
    key: hmac::Key,
}

/// What an unsubscribe token identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeTarget {
    pub tenant: String,
    pub recipient: String,
    pub message_id: String,
}

/// Bytes of the HMAC kept in a token (128 bits).
const TAG_LEN: usize = 16;

impl Unsubscribe {
    pub fn new(base_url: &str, secret: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
        }
    }

    /// The base URL the links start with (`unsubscribe.base_url`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `<base>/<payload>.<tag>`, both parts base64url.
    pub fn url(&self, target: &UnsubscribeTarget) -> String {
        let payload = format!(
            "{}\n{}\n{}",
            target.tenant, target.recipient, target.message_id
        );
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!(
            "{}/{}.{}",
            self.base_url,
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(&tag.as_ref()[..TAG_LEN])
        )
    }

    /// Checks a token's signature and returns what it identifies.
    pub fn verify(&self, token: &str) -> Option<UnsubscribeTarget> {
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let expected = hmac::sign(&self.key, &payload);
        let same = tag.len() == TAG_LEN
            && tag
                .iter()
                .zip(expected.as_ref())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return None;
        }
        let text = String::from_utf8(payload).ok()?;
        let mut parts = text.splitn(3, '\n');
        Some(UnsubscribeTarget {
            tenant: parts.next()?.to_owned(),
            recipient: parts.next()?.to_owned(),
            message_id: parts.next()?.to_owned(),
        })
    }

    /// The RFC 8058 header pair for `target`.
    pub fn headers(&self, target: &UnsubscribeTarget) -> [(&'static str, String); 2] {
        [
            ("List-Unsubscribe", format!("<{}>", self.url(target))),
            (
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".to_owned(),
            ),
        ]
    }
}

/// Gmail's `Feedback-ID: <campaign>:<tenant>:<pool>:<sender id>`; `:` in a
/// part would shift the fields, so it becomes `_`.
pub fn feedback_id(campaign: &str, tenant: &str, pool: &str) -> String {
    let part = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.replace(':', "_")
        }
    };
    format!("{}:{}:{}:sluice", part(campaign), part(tenant), part(pool))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> UnsubscribeTarget {
        UnsubscribeTarget {
            tenant: "acme".into(),
            recipient: "bob@example.com".into(),
            message_id: "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
        }
    }

    #[test]
    fn signed_url_round_trips_and_tampering_is_detected() {
        let unsub = Unsubscribe::new("https://u.example/u/", "secret-secret-secret-secret-1234");
        let url = unsub.url(&target());
        let token = url.strip_prefix("https://u.example/u/").expect("base url");
        assert_eq!(unsub.verify(token), Some(target()));
        let mut forged = target();
        forged.recipient = "eve@example.com".into();
        let other = unsub.url(&forged);
        let (_, forged_tag) = other.rsplit_once('.').expect("tag");
        let (payload, _) = token.split_once('.').expect("payload");
        assert_eq!(unsub.verify(&format!("{payload}.{forged_tag}")), None);
        let stranger = Unsubscribe::new("https://u.example/u", "another-secret-another-secret-12");
        assert_eq!(stranger.verify(token), None);
    }

    #[test]
    fn feedback_id_has_the_expected_shape() {
        assert_eq!(
            feedback_id("spring:24", "acme", "shared"),
            "spring_24:acme:shared:sluice"
        );
        assert_eq!(feedback_id("", "acme", "shared"), "-:acme:shared:sluice");
    }
}
