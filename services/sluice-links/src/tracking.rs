//! Open and click tracking links (docs/feedback.md#open-and-click-tracking).
//!
//! A tracked message's HTML gets a 1x1 image at `<base>/o/<token>` and each
//! http(s) link becomes `<base>/c/<token>`. A token is sealed under a key
//! derived from the unsubscribe secret ([`crate::token`]) and carries the
//! tenant, campaign, recipient and message id, and for a click the link's
//! own URL: the redirect can only lead where the message already pointed,
//! and nobody without the secret can make a token that leads elsewhere.

use crate::token::Sealer;

/// Purpose the tracking key is derived for.
const PURPOSE: &str = "sluice tracking links v1";

/// Most characters of a User-Agent kept in an event.
pub const MAX_USER_AGENT: usize = 256;

/// Signs and checks tracking links.
#[derive(Debug, Clone)]
pub struct Tracking {
    base_url: String,
    sealer: Sealer,
}

/// Which request a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Open,
    Click,
}

impl Kind {
    /// The path segment and payload marker.
    pub fn letter(self) -> &'static str {
        match self {
            Kind::Open => "o",
            Kind::Click => "c",
        }
    }
}

/// The message copy a tracking link belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    pub tenant: String,
    pub campaign: String,
    pub recipient: String,
    pub message_id: String,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub kind: Kind,
    pub copy: Copy,
    /// The link's target for a click; empty for an open.
    pub url: String,
}

impl Tracking {
    /// Links under `base_url` (`tracking.base_url`), keyed from `secret`
    /// (`unsubscribe.secret`).
    pub fn new(base_url: &str, secret: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            sealer: Sealer::derived(secret.as_bytes(), PURPOSE),
        }
    }

    /// The base URL the links start with.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The open pixel's URL for `copy`.
    pub fn open_url(&self, copy: &Copy) -> String {
        self.url(Kind::Open, copy, "")
    }

    /// The redirect URL that records a click on `target` and leads there.
    pub fn click_url(&self, copy: &Copy, target: &str) -> String {
        self.url(Kind::Click, copy, target)
    }

    fn url(&self, kind: Kind, copy: &Copy, target: &str) -> String {
        let payload = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            kind.letter(),
            copy.tenant,
            copy.campaign,
            copy.recipient,
            copy.message_id,
            target
        );
        format!(
            "{}/{}/{}",
            self.base_url,
            kind.letter(),
            self.sealer.seal(payload.as_bytes())
        )
    }

    /// What a token of `kind` identifies, when its tag holds and it was
    /// made for that kind of request.
    pub fn verify(&self, kind: Kind, token: &str) -> Option<Tracked> {
        let text = String::from_utf8(self.sealer.open(token)?).ok()?;
        let mut parts = text.splitn(6, '\n');
        if parts.next()? != kind.letter() {
            return None;
        }
        let copy = Copy {
            tenant: parts.next()?.to_owned(),
            campaign: parts.next()?.to_owned(),
            recipient: parts.next()?.to_owned(),
            message_id: parts.next()?.to_owned(),
        };
        let url = parts.next()?.to_owned();
        if (kind == Kind::Click) == url.is_empty() {
            return None;
        }
        Some(Tracked { kind, copy, url })
    }
}

/// User-Agent fragments (lowercase) of machines that fetch images or
/// follow links without a person: link scanners of mail security gateways,
/// HTTP libraries and crawlers.
const MACHINE_AGENTS: &[&str] = &[
    "barracuda",
    "mimecast",
    "proofpoint",
    "symantec",
    "trendmicro",
    "forcepoint",
    "fortiguard",
    "bingpreview",
    "headlesschrome",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "curl/",
    "wget/",
    "okhttp",
    "java/",
    "bot",
    "spider",
    "crawler",
    "scanner",
];

/// True when a request with this User-Agent is a machine's, not a
/// person's: no User-Agent at all; the bare `Mozilla/5.0` of Apple Mail
/// Privacy Protection, whose proxy fetches every image of every message
/// whether or not it is read; or a scanner, library or crawler
/// ([`MACHINE_AGENTS`]). The proxies of Gmail (`GoogleImageProxy`) and Yahoo
/// fetch an image when a person opens the message, so they count as people.
pub fn is_machine(user_agent: &str) -> bool {
    let agent = user_agent.trim();
    if agent.is_empty() || agent == "Mozilla/5.0" {
        return true;
    }
    let lower = agent.to_ascii_lowercase();
    MACHINE_AGENTS.iter().any(|m| lower.contains(m))
}

/// `user_agent` cut to [`MAX_USER_AGENT`] characters.
pub fn kept_user_agent(user_agent: &str) -> String {
    user_agent.chars().take(MAX_USER_AGENT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "secret-secret-secret-secret-1234";

    fn copy() -> Copy {
        Copy {
            tenant: "acme".into(),
            campaign: "spring".into(),
            recipient: "bob@example.com".into(),
            message_id: "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
        }
    }

    fn token(url: &str, kind: Kind) -> &str {
        let prefix = format!("https://t.example/t/{}/", kind.letter());
        url.strip_prefix(&prefix).expect("under the base URL")
    }

    #[test]
    fn links_round_trip_with_their_kind_and_target() {
        let tracking = Tracking::new("https://t.example/t/", SECRET);
        let open = tracking.open_url(&copy());
        let got = tracking.verify(Kind::Open, token(&open, Kind::Open));
        assert_eq!(
            got,
            Some(Tracked {
                kind: Kind::Open,
                copy: copy(),
                url: String::new()
            })
        );
        let target = "https://shop.example/sale?a=1&b=2\nx";
        let click = tracking.click_url(&copy(), target);
        let got = tracking
            .verify(Kind::Click, token(&click, Kind::Click))
            .expect("valid click");
        assert_eq!(got.url, target);
        assert_eq!(got.copy, copy());
    }

    #[test]
    fn a_token_of_one_kind_or_key_is_refused_as_another() {
        let tracking = Tracking::new("https://t.example/t", SECRET);
        let open = tracking.open_url(&copy());
        let click = tracking.click_url(&copy(), "https://shop.example/");
        assert_eq!(tracking.verify(Kind::Click, token(&open, Kind::Open)), None);
        assert_eq!(
            tracking.verify(Kind::Open, token(&click, Kind::Click)),
            None
        );
        // An unsubscribe token, sealed with the secret itself, is no
        // tracking token (and the reverse).
        let unsub = crate::unsubscribe::Unsubscribe::new("https://t.example/t/c", SECRET);
        let target = crate::unsubscribe::UnsubscribeTarget {
            tenant: "c".into(),
            recipient: "acme".into(),
            message_id: "x".into(),
            list: String::new(),
        };
        let forged = unsub.url(&target);
        assert_eq!(
            tracking.verify(Kind::Click, token(&forged, Kind::Click)),
            None
        );
        assert_eq!(unsub.verify(token(&click, Kind::Click)), None);
        let stranger = Tracking::new("https://t.example/t", "another-secret-another-secret-99");
        let theirs = stranger.click_url(&copy(), "https://evil.example/");
        assert_eq!(
            tracking.verify(Kind::Click, token(&theirs, Kind::Click)),
            None
        );
    }

    #[test]
    fn machines_are_told_from_people_by_their_user_agent() {
        for machine in [
            "",
            "Mozilla/5.0",
            "Mozilla/5.0 (compatible; Barracuda Sentinel)",
            "python-requests/2.31",
            "Mozilla/5.0 (compatible; bingbot/2.0)",
            "curl/8.5.0",
        ] {
            assert!(is_machine(machine), "{machine:?}");
        }
        for person in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
        ] {
            assert!(!is_machine(person), "{person:?}");
        }
        assert_eq!(kept_user_agent(&"x".repeat(1000)).len(), MAX_USER_AGENT);
    }
}
