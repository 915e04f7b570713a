//! One-click unsubscribe tokens (RFC 8058): `<base>/<payload>.<tag>` where
//! the payload names the tenant, recipient and message, and the list the
//! unsubscribe is scoped to when the message belongs to one
//! ([`crate::token`], keyed by `unsubscribe.secret` itself).

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
    /// The tenant's list the unsubscribe is scoped to; empty: all of the
    /// tenant's mail.
    pub list: String,
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

    /// `<base>/<payload>.<tag>`; a tenant-wide link's payload has three
    /// lines (as every link had before lists), a list's a fourth.
    pub fn url(&self, target: &UnsubscribeTarget) -> String {
        let mut payload = format!(
            "{}\n{}\n{}",
            target.tenant, target.recipient, target.message_id
        );
        if !target.list.is_empty() {
            payload.push('\n');
            payload.push_str(&target.list);
        }
        format!("{}/{}", self.base_url, self.sealer.seal(payload.as_bytes()))
    }

    /// Checks a token's signature and returns what it identifies.
    pub fn verify(&self, token: &str) -> Option<UnsubscribeTarget> {
        let text = String::from_utf8(self.sealer.open(token)?).ok()?;
        let mut parts = text.splitn(4, '\n');
        Some(UnsubscribeTarget {
            tenant: parts.next()?.to_owned(),
            recipient: parts.next()?.to_owned(),
            message_id: parts.next()?.to_owned(),
            list: parts.next().unwrap_or_default().to_owned(),
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

/// The suppression address of an unsubscribe from `list` (`list:<list>
/// <address>`, lowercase): no address can look like it (lists have no
/// spaces, addresses no unquoted ones), so it suppresses the recipient for
/// that list only. Ingest asks for it besides the address itself when a
/// submission names the list.
pub fn list_suppression(list: &str, address: &str) -> String {
    format!("list:{list} {address}").to_lowercase()
}

/// Checks a list name: 1 to 64 of A-Z, a-z, 0-9, `.`, `_`, `-`.
pub fn valid_list(list: &str) -> bool {
    (1..=64).contains(&list.len())
        && list
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The path a base URL's links are served under: `https://u.example/unsubscribe`
/// → `/unsubscribe`, without a trailing slash; `""` when the URL has none.
pub fn path_of(base_url: &str) -> String {
    let after_scheme = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |at| &after_scheme[at..]);
    path.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> UnsubscribeTarget {
        UnsubscribeTarget {
            tenant: "acme".into(),
            recipient: "bob@example.com".into(),
            message_id: "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            list: String::new(),
        }
    }

    #[test]
    fn a_list_rides_in_the_token_and_old_tokens_are_tenant_wide() {
        let unsub = Unsubscribe::new("https://u.example/u", "secret-secret-secret-secret-1234");
        let weekly = UnsubscribeTarget {
            list: "weekly".into(),
            ..target()
        };
        let url = unsub.url(&weekly);
        let token = url.rsplit('/').next().expect("token");
        assert_eq!(unsub.verify(token), Some(weekly));
        // A link made before lists existed: three lines, no list.
        let sealer = crate::token::Sealer::new(b"secret-secret-secret-secret-1234");
        let old = sealer.seal(b"acme\nbob@example.com\n01ARZ3NDEKTSV4RRFFQ69G5FAV");
        assert_eq!(unsub.verify(&old), Some(target()));
    }

    #[test]
    fn list_suppressions_cannot_be_addresses_and_names_are_checked() {
        assert_eq!(
            list_suppression("Weekly", "Bob@Example.com"),
            "list:weekly bob@example.com"
        );
        for good in ["weekly", "news.2026", "a_b-c", &"x".repeat(64)] {
            assert!(valid_list(good), "{good}");
        }
        for bad in ["", "two words", "a\nb", "ünï", &"x".repeat(65), "a:b"] {
            assert!(!valid_list(bad), "{bad:?}");
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
    fn the_route_follows_the_base_url() {
        assert_eq!(path_of("https://u.example/unsubscribe"), "/unsubscribe");
        assert_eq!(path_of("https://u.example/a/b/"), "/a/b");
        assert_eq!(path_of("https://u.example"), "");
        assert_eq!(path_of("http://127.0.0.1:7080/unsubscribe"), "/unsubscribe");
    }
}
