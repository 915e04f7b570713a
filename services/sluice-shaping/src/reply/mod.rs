//! SMTP replies, enhanced status codes, and the rules that map them to actions.

mod builtin;
mod rules;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use builtin::builtin_reply_rules;
pub use rules::{RepliesConfig, ReplyRule, ReplyRules, RuleAction};

/// An RFC 3463 enhanced status code `class.subject.detail`, e.g. `4.7.28`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// Subject: 1 addressing, 2 mailbox, 3 mail system, 4 network, 5 protocol, 6 content,
    /// 7 security or policy.
    pub subject: u16,
    /// Detail within the subject.
    pub detail: u16,
}

impl EnhancedCode {
    /// `class.subject.detail`.
    pub const fn new(class: u8, subject: u16, detail: u16) -> EnhancedCode {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }
}

impl FromStr for EnhancedCode {
    type Err = String;
    fn from_str(s: &str) -> Result<EnhancedCode, String> {
        let mut parts = s.split('.');
        let mut next = || parts.next().and_then(|p| p.parse::<u16>().ok());
        let (class, subject, detail) = match (next(), next(), next(), parts.next()) {
            (Some(c), Some(s), Some(d), None) => (c, s, d),
            _ => return Err(format!("`{s}` is not an enhanced status code")),
        };
        match class {
            2 | 4 | 5 if subject < 1000 && detail < 1000 => {
                Ok(EnhancedCode::new(class as u8, subject, detail))
            }
            _ => Err(format!("`{s}` is not an enhanced status code")),
        }
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply as the sender received it (multi-line replies joined with spaces).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Basic reply code, e.g. 421.
    pub code: u16,
    /// Enhanced status code, when the server sent one.
    pub enhanced: Option<EnhancedCode>,
    /// The rest of the reply text.
    pub text: String,
}

impl Reply {
    /// Parses `"421 4.7.28 text"` (also `421-4.7.28 ...` and replies without an enhanced code).
    pub fn parse(line: &str) -> Option<Reply> {
        let line = line.trim();
        let code: u16 = line.get(..3)?.parse().ok()?;
        if !(200..600).contains(&code) {
            return None;
        }
        let rest = line[3..].trim_start_matches(['-', ' ']);
        let (first, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        match first.parse::<EnhancedCode>() {
            Ok(e) => Some(Reply {
                code,
                enhanced: Some(e),
                text: tail.trim().to_owned(),
            }),
            Err(_) => Some(Reply {
                code,
                enhanced: None,
                text: rest.trim().to_owned(),
            }),
        }
    }

    /// A 2xx reply.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// A 5xx reply (or, with no usable basic code, a class-5 enhanced code).
    pub fn is_permanent(&self) -> bool {
        match self.code {
            500..=599 => true,
            200..=499 => false,
            _ => self.enhanced.is_some_and(|e| e.class == 5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies() {
        let r = Reply::parse("421-4.7.28 Gmail has detected an unusual rate").unwrap();
        assert_eq!(r.code, 421);
        assert_eq!(r.enhanced, Some(EnhancedCode::new(4, 7, 28)));
        assert_eq!(r.text, "Gmail has detected an unusual rate");
        let r = Reply::parse("250 OK").unwrap();
        assert!(r.is_success());
        assert_eq!((r.enhanced, r.text.as_str()), (None, "OK"));
        assert!(Reply::parse("hello").is_none());
        assert!(Reply::parse("999 x").is_none());
    }

    #[test]
    fn enhanced_code_round_trip() {
        let e: EnhancedCode = "5.7.515".parse().unwrap();
        assert_eq!(e.to_string(), "5.7.515");
        assert!("3.1.1".parse::<EnhancedCode>().is_err());
        assert!("5.1".parse::<EnhancedCode>().is_err());
    }
}
