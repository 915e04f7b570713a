//! Headers and addresses that large mailbox providers expect from a bulk
//! sender: one-click unsubscribe (RFC 8058) with an HMAC-signed URL and
//! Feedback-ID (the signed VERP return path is `sluice_node::verp`).

use crate::token::Sealer;

/// Signs and checks unsubscribe tokens.
#[derive(Debug, Clone)]
pub struct Unsubscribe {
    base_url: String,
    sealer: Sealer,
}

/// What an unsubscribe token identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeTarget {
    pub tenant: String,
    pub recipient: String,
    pub message_id: String,
}

impl Unsubscribe {
    pub fn new(base_url: &str, secret: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            sealer: Sealer::new(secret.as_bytes()),
        }
    }

    /// The base URL the links start with (`unsubscribe.base_url`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `<base>/<payload>.<tag>` ([`crate::token`]).
    pub fn url(&self, target: &UnsubscribeTarget) -> String {
        let payload = format!(
            "{}\n{}\n{}",
            target.tenant, target.recipient, target.message_id
        );
        format!("{}/{}", self.base_url, self.sealer.seal(payload.as_bytes()))
    }

    /// Checks a token's signature and returns what it identifies.
    pub fn verify(&self, token: &str) -> Option<UnsubscribeTarget> {
        let text = String::from_utf8(self.sealer.open(token)?).ok()?;
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
