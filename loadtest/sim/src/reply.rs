//! SMTP replies: the fixed ones and each provider's deferral texts.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::scenario::Style;

/// One SMTP reply: a code and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text lines, without the code; the enhanced status code, if any,
    /// is part of the text.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// True for 4xx replies.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// True for 5xx replies.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// A 421 reply means the server closes the connection after sending it.
    pub fn closes(&self) -> bool {
        self.code == 421
    }

    /// The reply as it goes on the wire: `250-a\r\n250 b\r\n`.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}{}\r\n", self.code, sep, line).as_bytes());
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// The limits a client can break; the key of the violation counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// More concurrent connections from one IP than `connections_per_ip`.
    Connections,
    /// More messages on one connection than `messages_per_connection`.
    MessagesPerConnection,
    /// More messages in 60 s from one IP than `messages_per_minute`.
    MessagesPerMinute,
    /// More recipients in one transaction than `recipients_per_message`.
    RecipientsPerMessage,
}

impl LimitKind {
    /// All kinds, in report order.
    pub const ALL: [LimitKind; 4] = [
        LimitKind::Connections,
        LimitKind::MessagesPerConnection,
        LimitKind::MessagesPerMinute,
        LimitKind::RecipientsPerMessage,
    ];

    /// The snake_case name used in the report and the table.
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Connections => "connections",
            LimitKind::MessagesPerConnection => "messages_per_connection",
            LimitKind::MessagesPerMinute => "messages_per_minute",
            LimitKind::RecipientsPerMessage => "recipients_per_message",
        }
    }
}

/// The reply a provider of this style gives when `kind` is exceeded by `ip`.
pub fn deferral(style: Style, kind: LimitKind, ip: IpAddr) -> Reply {
    if kind == LimitKind::RecipientsPerMessage {
        return too_many_recipients(style);
    }
    match style {
        Style::Gmail => gmail(kind, ip),
        Style::Yahoo => yahoo(kind, ip),
        Style::Outlook => outlook(kind, ip),
        Style::Generic => generic(kind, ip),
    }
}

fn gmail(kind: LimitKind, ip: IpAddr) -> Reply {
    match kind {
        LimitKind::MessagesPerMinute => Reply::new(
            421,
            format!(
                "4.7.28 [{ip}] Our system has detected an unusual rate of unsolicited mail \
                 originating from your IP address. To protect our users from spam, mail sent \
                 from your IP address has been temporarily rate limited. \
                 https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp"
            ),
        ),
        _ => Reply::new(421, "4.7.0 Try again later, closing connection. - gsmtp"),
    }
}

fn yahoo(kind: LimitKind, ip: IpAddr) -> Reply {
    match kind {
        LimitKind::MessagesPerConnection => Reply::new(
            421,
            "4.7.0 Max message per connection reached, closing transmission channel",
        ),
        _ => Reply::new(
            421,
            format!(
                "4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected \
                 volume or user complaints - 4.16.55.1; \
                 see https://postmaster.yahooinc.com/error-codes"
            ),
        ),
    }
}

fn outlook(kind: LimitKind, ip: IpAddr) -> Reply {
    match kind {
        LimitKind::Connections => Reply::new(
            421,
            "4.3.2 The maximum number of concurrent server connections has exceeded a limit, \
             closing transmission channel",
        ),
        LimitKind::MessagesPerConnection => Reply::new(
            421,
            format!(
                "RP-001 Unfortunately, some messages from {ip} weren't sent. Please try again. \
                 We have limits for how many messages can be sent per hour and per day."
            ),
        ),
        _ => Reply::new(
            451,
            format!("4.7.500 Server busy. Please try again later from [{ip}]. (S77719)"),
        ),
    }
}

fn generic(kind: LimitKind, ip: IpAddr) -> Reply {
    match kind {
        LimitKind::Connections => Reply::new(421, format!("4.7.0 Too many connections from {ip}")),
        LimitKind::MessagesPerConnection => {
            Reply::new(421, "4.7.0 Too many messages on this connection")
        }
        _ => Reply::new(
            421,
            format!("4.7.0 Rate limit exceeded for {ip}, try again later"),
        ),
    }
}

fn too_many_recipients(style: Style) -> Reply {
    match style {
        Style::Gmail => Reply::new(452, "4.5.3 Your message has too many recipients. - gsmtp"),
        _ => Reply::new(452, "4.5.3 Too many recipients"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_reply_uses_dashes_until_the_last_line() {
        let r = Reply {
            code: 250,
            lines: vec!["a".into(), "b".into(), "c".into()],
        };
        assert_eq!(r.to_wire(), b"250-a\r\n250-b\r\n250 c\r\n");
    }

    #[test]
    fn provider_replies_carry_their_signature_codes() {
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let gmail = deferral(Style::Gmail, LimitKind::MessagesPerMinute, ip);
        assert!(gmail.to_string().starts_with("421 4.7.28 [127.0.0.9]"));
        let yahoo = deferral(Style::Yahoo, LimitKind::MessagesPerMinute, ip);
        assert!(
            yahoo
                .to_string()
                .contains("[TSS04] Messages from 127.0.0.9")
        );
        let ms = deferral(Style::Outlook, LimitKind::MessagesPerMinute, ip);
        assert!(ms.to_string().starts_with("451 4.7.500 Server busy"));
        let rp = deferral(Style::Outlook, LimitKind::MessagesPerConnection, ip);
        assert!(rp.to_string().contains("RP-001"));
        let conn = deferral(Style::Generic, LimitKind::Connections, ip);
        assert!(
            conn.to_string()
                .starts_with("421 4.7.0 Too many connections")
        );
        assert!(conn.closes() && !ms.closes());
    }
}
