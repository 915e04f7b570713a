//! VERP return paths (variable envelope return path): each message is sent
//! from an address that names it, `bounce+<message id>-<tag>@<bounce
//! domain>`, so a bounce that arrives later says which message it is about.
//! The tag is the first 64 bits of an HMAC-SHA256 of the message id, in
//! lowercase hex: the inbound MX refuses addresses it did not issue, so
//! nobody can make Sluice suppress a recipient by mailing a made-up
//! address. Ingest signs, the inbound role verifies, with the same secret.

use ring::hmac;

/// The attempt number of events made from reports that arrive later (a
/// bounce or complaint at the MX, an unsubscribe by mail): apart from the
/// sender's own attempts, so the recorder keeps both, and the same for
/// every report about a message, so a repeated report counts once. The
/// recorder counts a `bounced` event with it as a late bounce.
pub const LATE_ATTEMPT: u32 = u32::MAX - 1;

/// The local part's prefix of return paths.
const PREFIX: &str = "bounce+";

/// The local part's prefix of `mailto:` unsubscribe addresses.
const UNSUBSCRIBE: &str = "unsubscribe+";

/// Hex digits of the tag (64 bits).
const TAG_HEX: usize = 16;

/// Signs and verifies VERP addresses.
#[derive(Debug, Clone)]
pub struct Verp {
    key: hmac::Key,
}

impl Verp {
    /// Keyed by `secret` (ingest's `unsubscribe.secret`; a prefix keeps the
    /// two uses of it apart).
    pub fn new(secret: &str) -> Self {
        let keyed = format!("sluice-verp-v1:{secret}");
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, keyed.as_bytes()),
        }
    }

    /// `bounce+<message id>-<tag>@<domain>`.
    pub fn return_path(&self, message_id: &str, domain: &str) -> String {
        format!(
            "{PREFIX}{message_id}-{}@{domain}",
            self.tag(PREFIX, message_id)
        )
    }

    /// `unsubscribe+<message id>-<tag>@<domain>`: the `mailto:` of
    /// `List-Unsubscribe` (RFC 2369). Its tag is keyed apart from the return
    /// path's, so a bounce address cannot be turned into an unsubscribe.
    pub fn unsubscribe_address(&self, message_id: &str, domain: &str) -> String {
        let tag = self.tag(UNSUBSCRIBE, message_id);
        format!("{UNSUBSCRIBE}{message_id}-{tag}@{domain}")
    }

    /// The message id a VERP address (or its local part) names, when its
    /// tag holds. Compares case-insensitively: some servers fold the case of
    /// local parts, and message ids (ULIDs) are case-insensitive too.
    pub fn message_id(&self, address: &str) -> Option<String> {
        self.named(PREFIX, address)
    }

    /// The message id an unsubscribe address names, when its tag holds.
    pub fn unsubscribe_message_id(&self, address: &str) -> Option<String> {
        self.named(UNSUBSCRIBE, address)
    }

    fn named(&self, prefix: &str, address: &str) -> Option<String> {
        let local = address.rsplit_once('@').map_or(address, |(local, _)| local);
        let rest = strip_prefix_ignore_case(local, prefix)?;
        let (id, tag) = rest.rsplit_once('-')?;
        if id.is_empty() || tag.len() != TAG_HEX {
            return None;
        }
        let id = id.to_ascii_uppercase();
        let expected = self.tag(prefix, &id);
        let same = expected
            .bytes()
            .zip(tag.to_ascii_lowercase().bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        same.then_some(id)
    }

    /// The tag of `message_id` for addresses with `prefix`. Return paths
    /// sign the id alone (as first issued); other kinds sign `prefix` + id.
    fn tag(&self, prefix: &str, message_id: &str) -> String {
        let id = message_id.to_ascii_uppercase();
        let signed = if prefix == PREFIX {
            id
        } else {
            format!("{prefix}{id}")
        };
        let sig = hmac::sign(&self.key, signed.as_bytes());
        sig.as_ref()[..TAG_HEX / 2]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01JD5Q3W7Z8X9Y0A1B2C3D4E5F";

    #[test]
    fn an_issued_address_names_its_message() {
        let verp = Verp::new("secret-secret-secret-secret-secret");
        let address = verp.return_path(ID, "bounces.acme.example");
        assert!(
            address.starts_with("bounce+01JD5Q3W7Z8X9Y0A1B2C3D4E5F-"),
            "{address}"
        );
        let local = address.split('@').next().unwrap();
        assert!(local.len() <= 64, "RFC 5321 local part limit: {local}");
        assert_eq!(verp.message_id(&address).as_deref(), Some(ID));
        assert_eq!(
            verp.message_id(&address.to_ascii_lowercase()).as_deref(),
            Some(ID),
            "case folded by a relay"
        );
    }

    #[test]
    fn forged_and_foreign_addresses_are_refused() {
        let verp = Verp::new("secret-secret-secret-secret-secret");
        let address = verp.return_path(ID, "b.example");
        let other = verp.return_path("01JD5Q3W7Z8X9Y0A1B2C3D4E5G", "b.example");
        let (_, other_tag) = other.split_once('-').unwrap();
        let forged = format!("bounce+{ID}-{other_tag}");
        assert_eq!(verp.message_id(&forged), None, "another message's tag");
        let stranger = Verp::new("another-secret-another-secret-123");
        assert_eq!(stranger.message_id(&address), None, "another installation");
        for bad in [
            "postmaster@b.example",
            "bounce+@b.example",
            "bounce+-0123456789abcdef@b.example",
            &format!("bounce+{ID}-0123@b.example"),
            &format!("bounce+{ID}@b.example"),
        ] {
            assert_eq!(verp.message_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn unsubscribe_addresses_are_their_own_kind() {
        let verp = Verp::new("secret-secret-secret-secret-secret");
        let unsub = verp.unsubscribe_address(ID, "b.example");
        assert!(unsub.split('@').next().unwrap().len() <= 64, "{unsub}");
        assert_eq!(verp.unsubscribe_message_id(&unsub).as_deref(), Some(ID));
        assert_eq!(verp.message_id(&unsub), None, "not a bounce address");
        let bounce = verp.return_path(ID, "b.example");
        let tag = bounce.rsplit_once('-').unwrap().1;
        let swapped = format!("unsubscribe+{ID}-{tag}");
        assert_eq!(
            verp.unsubscribe_message_id(&swapped),
            None,
            "a bounce tag does not unsubscribe"
        );
    }
}
