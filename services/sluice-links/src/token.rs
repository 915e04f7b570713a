//! Signed tokens in URLs: `<payload>.<tag>`, both base64url without
//! padding, the tag the first 128 bits of the payload's HMAC-SHA256. The
//! one-click unsubscribe links and the tracking links use them, each under
//! its own key, so a token made for one is never valid for the other.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// Bytes of the HMAC kept in a token (128 bits).
const TAG_LEN: usize = 16;

/// Seals payloads into tokens and opens tokens whose tag holds.
#[derive(Debug, Clone)]
pub struct Sealer {
    key: hmac::Key,
}

impl Sealer {
    /// A sealer keyed by `secret` itself.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// A sealer whose key is derived from `secret` for one `purpose`: its
    /// tokens do not open under [`Sealer::new`] of the same secret, nor
    /// under another purpose.
    pub fn derived(secret: &[u8], purpose: &str) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        Self::new(hmac::sign(&root, purpose.as_bytes()).as_ref())
    }

    /// `<payload>.<tag>`.
    pub fn seal(&self, payload: &[u8]) -> String {
        let tag = hmac::sign(&self.key, payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(&tag.as_ref()[..TAG_LEN])
        )
    }

    /// The payload of a token whose tag holds; `None` for anything forged,
    /// altered, cut short or malformed.
    pub fn open(&self, token: &str) -> Option<Vec<u8>> {
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
        same.then_some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_opens_and_any_change_is_refused() {
        let sealer = Sealer::new(b"secret-secret-secret-secret-1234");
        let token = sealer.seal(b"acme\nbob@example.com");
        assert_eq!(
            sealer.open(&token).as_deref(),
            Some(&b"acme\nbob@example.com"[..])
        );
        let (payload, tag) = token.split_once('.').expect("two parts");
        let other = URL_SAFE_NO_PAD.encode(b"acme\neve@example.com");
        for bad in [
            format!("{other}.{tag}"),
            format!("{payload}.{}", &tag[..tag.len() - 2]),
            format!("{payload}.AAAAAAAAAAAAAAAAAAAAAA"),
            payload.to_owned(),
            format!("{payload}.{tag}!"),
            String::new(),
        ] {
            assert_eq!(sealer.open(&bad), None, "{bad}");
        }
    }

    #[test]
    fn derived_keys_do_not_open_each_others_tokens() {
        let secret = b"secret-secret-secret-secret-1234";
        let plain = Sealer::new(secret);
        let tracking = Sealer::derived(secret, "tracking");
        let other = Sealer::derived(secret, "other");
        let token = tracking.seal(b"payload");
        assert!(tracking.open(&token).is_some());
        assert_eq!(plain.open(&token), None);
        assert_eq!(other.open(&token), None);
        assert_eq!(tracking.open(&plain.seal(b"payload")), None);
    }
}
