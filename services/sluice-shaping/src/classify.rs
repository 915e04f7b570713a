//! Bounce classification of SMTP replies and DSN status codes.

use std::sync::OnceLock;

use regex::RegexSet;
use serde::{Deserialize, Serialize};

use crate::reply::{EnhancedCode, Reply};

/// What went wrong with a delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceClass {
    /// The mailbox does not exist or is disabled.
    BadMailbox,
    /// The domain does not exist or accepts no mail.
    BadDomain,
    /// The mailbox is over quota.
    MailboxFull,
    /// Refused by local policy or as spam.
    PolicyBlock,
    /// Refused or deferred because of the sending IP's or domain's reputation (blocklists).
    Reputation,
    /// Too much, too fast: message, connection or recipient limits.
    RateLimit,
    /// SPF, DKIM or DMARC failed or is missing.
    Authentication,
    /// The receiver requires TLS.
    TlsRequired,
    /// The message itself was refused: size, media, virus, content.
    Content,
    /// Any other transient failure.
    OtherTemporary,
    /// Any other permanent failure.
    OtherPermanent,
}

impl BounceClass {
    /// A hard bounce: the address itself is bad, retrying or resending will not help.
    pub fn is_hard(self) -> bool {
        matches!(
            self,
            BounceClass::BadMailbox | BounceClass::BadDomain | BounceClass::OtherPermanent
        )
    }

    /// A permanent failure of this class puts the address on the suppression list.
    pub fn suppresses(self) -> bool {
        matches!(self, BounceClass::BadMailbox | BounceClass::BadDomain)
    }
}

/// The classification of one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// The category.
    pub class: BounceClass,
    /// The reply is a permanent (5xx) failure.
    pub permanent: bool,
    /// Permanent and of a hard class.
    pub hard: bool,
    /// Permanent and the address should be suppressed.
    pub suppress: bool,
}

impl Classification {
    /// Combines a class with permanence.
    pub fn new(class: BounceClass, permanent: bool) -> Classification {
        Classification {
            class,
            permanent,
            hard: permanent && class.is_hard(),
            suppress: permanent && class.suppresses(),
        }
    }
}

/// Specific enhanced codes (subject, detail) that decide the class on their own.
fn by_specific_code(e: EnhancedCode) -> Option<BounceClass> {
    use BounceClass::*;
    Some(match (e.subject, e.detail) {
        (1, 0 | 1 | 6) | (2, 1) => BadMailbox,
        (1, 2 | 10) | (4, 4) => BadDomain,
        (2, 2) => MailboxFull,
        (2, 3) | (3, 4) | (6, _) => Content,
        (5, 3) | (4, 5) => RateLimit,
        (7, 20..=27) | (7, 509 | 515) => Authentication,
        (7, 10 | 11) => TlsRequired,
        (7, 28) | (7, 606..=651) => Reputation,
        _ => return None,
    })
}

/// Text patterns, checked in order; the first match decides.
const TEXT_PATTERNS: &[(&str, BounceClass)] = &[
    (
        r"(?i)\b(spf|dkim|dmarc)\b|unauthenticated|not authenticated",
        BounceClass::Authentication,
    ),
    (
        r"(?i)starttls|tls (is )?required|encryption required|secure connection",
        BounceClass::TlsRequired,
    ),
    (
        r"(?i)reputation|block ?list|black ?list|spamhaus|barracuda|\b(rbl|dnsbl)\b|\bTSS?0[1-4]\b|banned",
        BounceClass::Reputation,
    ),
    (
        r"(?i)rate limit|too many|throttl|exceeded .*limit|slow down|\bRP-00[1-3]\b",
        BounceClass::RateLimit,
    ),
    (
        r"(?i)mailbox (is )?full|over ?quota|quota exceeded|insufficient (system )?storage",
        BounceClass::MailboxFull,
    ),
    (
        r"(?i)user unknown|unknown (user|recipient)|no such (user|mailbox|recipient)|does ?n[o']t exist|invalid (recipient|mailbox)|mailbox not found|account (is |has been )?disabled",
        BounceClass::BadMailbox,
    ),
    (
        r"(?i)domain (not found|does ?n[o']t exist)|no such domain|host not found|unrouteable|no mx",
        BounceClass::BadDomain,
    ),
    (
        r"(?i)virus|malware|attachment|message (is )?too (big|large)|content",
        BounceClass::Content,
    ),
    (
        r"(?i)spam|policy|blocked|denied|prohibited|not allowed",
        BounceClass::PolicyBlock,
    ),
];

/// Generic fallback by enhanced subject.
fn by_subject(e: EnhancedCode) -> Option<BounceClass> {
    match e.subject {
        1 => Some(BounceClass::BadMailbox),
        6 => Some(BounceClass::Content),
        7 => Some(BounceClass::PolicyBlock),
        _ => None,
    }
}

/// Classifies replies: specific enhanced codes, then text patterns, then the enhanced
/// subject, then permanence.
#[derive(Clone, Debug)]
pub struct Classifier {
    text: RegexSet,
}

impl Default for Classifier {
    fn default() -> Classifier {
        let text = RegexSet::new(TEXT_PATTERNS.iter().map(|(p, _)| *p))
            .expect("built-in patterns compile");
        Classifier { text }
    }
}

impl Classifier {
    /// Classifies an SMTP reply.
    pub fn classify(&self, reply: &Reply) -> Classification {
        let permanent = reply.is_permanent();
        let class = reply
            .enhanced
            .and_then(by_specific_code)
            .or_else(|| self.by_text(&reply.text))
            .or_else(|| reply.enhanced.and_then(by_subject))
            .unwrap_or(if permanent {
                BounceClass::OtherPermanent
            } else {
                BounceClass::OtherTemporary
            });
        Classification::new(class, permanent)
    }

    /// Classifies a DSN: its `Status:` code and `Diagnostic-Code:` text.
    pub fn classify_dsn(&self, status: EnhancedCode, diagnostic: &str) -> Classification {
        let code = if status.class == 5 { 550 } else { 450 };
        self.classify(&Reply {
            code,
            enhanced: Some(status),
            text: diagnostic.to_owned(),
        })
    }

    fn by_text(&self, text: &str) -> Option<BounceClass> {
        self.text
            .matches(text)
            .iter()
            .next()
            .map(|i| TEXT_PATTERNS[i].1)
    }
}

/// Classifies with a shared [`Classifier`].
pub fn classify(reply: &Reply) -> Classification {
    static SHARED: OnceLock<Classifier> = OnceLock::new();
    SHARED.get_or_init(Classifier::default).classify(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use BounceClass::*;

    fn class_of(line: &str) -> Classification {
        classify(&Reply::parse(line).unwrap())
    }

    #[test]
    fn classes_from_codes_and_text() {
        let cases = [
            (
                "550 5.1.1 The email account that you tried to reach does not exist",
                BadMailbox,
                true,
            ),
            ("550 5.7.1 user unknown", BadMailbox, true),
            ("550 No such user here", BadMailbox, true),
            ("550 5.1.2 bad destination system", BadDomain, true),
            ("554 5.1.10 Recipient domain has null MX", BadDomain, true),
            ("552 5.2.2 Mailbox full", MailboxFull, true),
            (
                "452 4.2.2 The email account that you tried to reach is over quota",
                MailboxFull,
                false,
            ),
            (
                "550 5.7.26 Unauthenticated email is not accepted from this domain",
                Authentication,
                true,
            ),
            (
                "550 5.7.515 Access denied, sending domain does not meet the required authentication level",
                Authentication,
                true,
            ),
            (
                "550 5.7.1 Message rejected: DMARC policy",
                Authentication,
                true,
            ),
            (
                "530 5.7.0 Must issue a STARTTLS command first",
                TlsRequired,
                true,
            ),
            ("550 5.7.10 Encryption needed", TlsRequired, true),
            (
                "421 4.7.28 unusual rate of unsolicited mail",
                Reputation,
                false,
            ),
            (
                "554 5.7.1 Service unavailable; Client host blocked using Spamhaus",
                Reputation,
                true,
            ),
            (
                "421 4.7.0 [TSS04] Messages temporarily deferred",
                Reputation,
                false,
            ),
            ("452 4.5.3 Too many recipients", RateLimit, false),
            ("421 Too many connections", RateLimit, false),
            ("552 5.3.4 Message size exceeds fixed limit", Content, true),
            ("554 5.7.1 Message contains a virus", Content, true),
            ("550 5.7.1 Message rejected as spam", PolicyBlock, true),
            ("550 5.7.1 Relaying denied", PolicyBlock, true),
            ("451 4.3.0 Local error in processing", OtherTemporary, false),
            ("554 Transaction failed", OtherPermanent, true),
        ];
        for (line, class, permanent) in cases {
            let c = class_of(line);
            assert_eq!((c.class, c.permanent), (class, permanent), "{line}");
        }
    }

    #[test]
    fn hard_and_suppress_flags() {
        let c = class_of("550 5.1.1 user unknown");
        assert!(c.hard && c.suppress);
        let c = class_of("450 4.1.1 user unknown (try later)");
        assert!(!c.hard && !c.suppress);
        let c = class_of("550 5.7.1 spam");
        assert!(c.permanent && !c.hard && !c.suppress);
        let c = class_of("554 Transaction failed");
        assert!(c.hard && !c.suppress);
    }

    #[test]
    fn dsn_status() {
        let c = Classifier::default();
        let r = c.classify_dsn("5.1.1".parse().unwrap(), "smtp; 550 user unknown");
        assert_eq!(r.class, BadMailbox);
        assert!(r.suppress);
        let r = c.classify_dsn("4.4.7".parse().unwrap(), "delivery time expired");
        assert_eq!((r.class, r.permanent), (OtherTemporary, false));
    }
}
