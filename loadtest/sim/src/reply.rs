//! Each provider's deferral replies and the limits that trigger them.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sluice_smtp::Reply;

use crate::scenario::Style;

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
