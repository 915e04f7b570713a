//! Built-in reply rules. Sources and reasoning are in `docs/shaping.md`.

use super::{ReplyRule, RuleAction};
use crate::classify::BounceClass;
use crate::time::Span;

struct R {
    name: &'static str,
    provider: Option<&'static str>,
    code: Option<&'static str>,
    enhanced: Option<&'static str>,
    text: Option<&'static str>,
    action: RuleAction,
    duration: Option<Span>,
    retry_after: Option<Span>,
    class: Option<BounceClass>,
}

const BASE: R = R {
    name: "",
    provider: None,
    code: None,
    enhanced: None,
    text: None,
    action: RuleAction::Retry,
    duration: None,
    retry_after: None,
    class: None,
};

const RULES: &[R] = &[
    // Gmail: unusual rate of unsolicited mail from the IP.
    R {
        name: "gmail-4.7.28",
        provider: Some("google"),
        code: Some("^421$"),
        enhanced: Some(r"^4\.7\.28$"),
        action: RuleAction::Slow,
        class: Some(BounceClass::Reputation),
        ..BASE
    },
    // Gmail: low reputation / temporary rate limit / try again later.
    R {
        name: "gmail-4.7.0",
        provider: Some("google"),
        code: Some("^421$"),
        enhanced: Some(r"^4\.7\.0$"),
        action: RuleAction::Slow,
        ..BASE
    },
    // Yahoo: deferred for unexpected volume or complaints.
    R {
        name: "yahoo-tss04",
        provider: Some("yahoo"),
        text: Some(r"\bTSS04\b"),
        action: RuleAction::SuspendPath,
        duration: Some(Span::hours(1)),
        class: Some(BounceClass::Reputation),
        ..BASE
    },
    R {
        name: "yahoo-ts01",
        provider: Some("yahoo"),
        text: Some(r"\bTS01\b"),
        action: RuleAction::SuspendPath,
        duration: Some(Span::hours(1)),
        class: Some(BounceClass::Reputation),
        ..BASE
    },
    R {
        name: "yahoo-ts02",
        provider: Some("yahoo"),
        text: Some(r"\bTS02\b"),
        action: RuleAction::SuspendPath,
        duration: Some(Span::hours(4)),
        class: Some(BounceClass::Reputation),
        ..BASE
    },
    R {
        name: "yahoo-ts03",
        provider: Some("yahoo"),
        text: Some(r"\bTS03\b"),
        action: RuleAction::SuspendPath,
        duration: Some(Span::hours(24)),
        class: Some(BounceClass::Reputation),
        ..BASE
    },
    // Microsoft: rate limit exceeded / connection limit / connection rate limit.
    R {
        name: "microsoft-rp-001",
        provider: Some("microsoft"),
        text: Some(r"\bRP-001\b"),
        action: RuleAction::Slow,
        class: Some(BounceClass::RateLimit),
        ..BASE
    },
    R {
        name: "microsoft-rp-002",
        provider: Some("microsoft"),
        text: Some(r"\bRP-002\b"),
        action: RuleAction::SuspendPath,
        duration: Some(Span::mins(15)),
        class: Some(BounceClass::RateLimit),
        ..BASE
    },
    R {
        name: "microsoft-rp-003",
        provider: Some("microsoft"),
        text: Some(r"\bRP-003\b"),
        action: RuleAction::SuspendPath,
        duration: Some(Span::mins(15)),
        class: Some(BounceClass::RateLimit),
        ..BASE
    },
    // Microsoft: 451 4.7.500-4.7.699, server busy / temporarily rate limited by IP reputation.
    R {
        name: "microsoft-4.7.5xx-6xx",
        provider: Some("microsoft"),
        code: Some("^451$"),
        enhanced: Some(r"^4\.7\.[56][0-9]{2}$"),
        action: RuleAction::Slow,
        ..BASE
    },
    // Any site: too many connections from this IP.
    R {
        name: "too-many-connections",
        code: Some("^4"),
        text: Some(r"(?i)too many (concurrent |simultaneous |open )?(connections|sessions)"),
        action: RuleAction::SuspendPath,
        duration: Some(Span::mins(5)),
        class: Some(BounceClass::RateLimit),
        ..BASE
    },
    // Any site: too many recipients; the rest go in a new transaction.
    R {
        name: "too-many-recipients",
        code: Some("^452$"),
        enhanced: Some(r"^4\.5\.3$"),
        action: RuleAction::Retry,
        class: Some(BounceClass::RateLimit),
        ..BASE
    },
    // Any site: greylisting asks for a retry after a few minutes.
    R {
        name: "greylisting",
        code: Some("^4"),
        text: Some(r"(?i)gr[ae]y ?list|postgrey"),
        action: RuleAction::Retry,
        retry_after: Some(Span::mins(6)),
        class: Some(BounceClass::OtherTemporary),
        ..BASE
    },
];

/// The built-in rules, in matching order.
pub fn builtin_reply_rules() -> Vec<ReplyRule> {
    RULES
        .iter()
        .map(|r| ReplyRule {
            name: r.name.to_owned(),
            provider: r.provider.map(str::to_owned),
            code: r.code.map(str::to_owned),
            enhanced: r.enhanced.map(str::to_owned),
            text: r.text.map(str::to_owned),
            action: r.action,
            duration: r.duration,
            retry_after: r.retry_after,
            class: r.class,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{RepliesConfig, Reply, ReplyRules};

    fn rule_for(provider: Option<&str>, line: &str) -> Option<String> {
        let rules = ReplyRules::new(&RepliesConfig::default()).unwrap();
        rules
            .find(provider, &Reply::parse(line).unwrap())
            .map(|r| r.name.clone())
    }

    #[test]
    fn gmail_rules() {
        let g = Some("google");
        assert_eq!(
            rule_for(g, "421 4.7.28 unusual rate of unsolicited mail").as_deref(),
            Some("gmail-4.7.28")
        );
        assert_eq!(
            rule_for(g, "421 4.7.0 Try again later, closing connection.").as_deref(),
            Some("gmail-4.7.0")
        );
        assert_eq!(rule_for(Some("yahoo"), "421 4.7.28 x"), None);
    }

    #[test]
    fn yahoo_rules() {
        let y = Some("yahoo");
        let cases = [
            (
                "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred",
                "yahoo-tss04",
            ),
            (
                "421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred",
                "yahoo-ts01",
            ),
            (
                "421 4.7.0 [TS02] Messages from 192.0.2.1 temporarily deferred",
                "yahoo-ts02",
            ),
            (
                "554 5.7.9 [TS03] All messages from 192.0.2.1 will be permanently deferred",
                "yahoo-ts03",
            ),
        ];
        for (line, name) in cases {
            assert_eq!(rule_for(y, line).as_deref(), Some(name), "{line}");
        }
    }

    #[test]
    fn microsoft_rules() {
        let m = Some("microsoft");
        assert_eq!(
            rule_for(m, "451 4.7.500 Server busy. Please try again later.").as_deref(),
            Some("microsoft-4.7.5xx-6xx")
        );
        assert_eq!(
            rule_for(
                m,
                "451 4.7.650 temporarily rate limited due to IP reputation"
            )
            .as_deref(),
            Some("microsoft-4.7.5xx-6xx")
        );
        assert_eq!(rule_for(m, "451 4.7.700 x"), None);
        assert_eq!(
            rule_for(m, "451 4.7.500 Server busy (RP-001)").as_deref(),
            Some("microsoft-rp-001")
        );
        assert_eq!(
            rule_for(m, "451 4.7.500 Server busy (RP-002)").as_deref(),
            Some("microsoft-rp-002")
        );
        assert_eq!(
            rule_for(m, "451 4.7.500 Server busy (RP-003)").as_deref(),
            Some("microsoft-rp-003")
        );
    }

    #[test]
    fn generic_rules() {
        assert_eq!(
            rule_for(
                None,
                "421 4.7.0 Too many concurrent connections from your IP"
            )
            .as_deref(),
            Some("too-many-connections")
        );
        assert_eq!(
            rule_for(None, "452 4.5.3 Too many recipients").as_deref(),
            Some("too-many-recipients")
        );
        assert_eq!(
            rule_for(
                None,
                "450 4.2.0 Greylisted, please try again in 300 seconds"
            )
            .as_deref(),
            Some("greylisting")
        );
        assert_eq!(rule_for(None, "550 5.1.1 user unknown"), None);
    }
}
