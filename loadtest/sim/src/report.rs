//! The report: per provider and source IP, what was accepted, deferred,
//! rejected and violated; and the list of accepted messages.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::SimError;
use crate::ledger::Ledger;
use crate::reply::LimitKind;
use crate::scenario::Limits;

/// One message the simulator accepted with `250` after DATA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedMessage {
    /// The provider that accepted it.
    pub provider: String,
    /// The listener address it came in on.
    pub server: SocketAddr,
    /// The peer address of the TCP connection.
    pub source_ip: IpAddr,
    /// The `Message-ID` header's value, trimmed (with its angle brackets),
    /// or `fnv64:<hex>` of the whole message when there is none.
    pub message_id: String,
    /// The `MAIL FROM` address (empty for the null sender).
    pub mail_from: String,
    /// The recipients that got `250` in this transaction.
    pub recipients: Vec<String>,
    /// Message size in bytes after dot-unstuffing.
    pub size: usize,
    /// Whether the transaction ran inside STARTTLS.
    pub tls: bool,
    /// Wall-clock time of the `250` reply, milliseconds since the Unix epoch.
    pub accepted_at_unix_ms: u64,
}

/// Counters for one source IP at one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceReport {
    /// The client's IP address.
    pub source_ip: IpAddr,
    /// TCP connections accepted from it (including refused ones).
    pub connections: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// Policy replies with a 4xx code (limits, greylisting, full mailbox,
    /// random temporary failures).
    pub deferred: u64,
    /// Policy replies with a 5xx code (unknown user, relaying denied,
    /// random permanent failures, oversized messages).
    pub rejected: u64,
    /// Attempts past an advertised limit, by limit. Empty for a well-behaved
    /// sender.
    pub violations: BTreeMap<LimitKind, u64>,
    /// The most messages seen in any 60-second window.
    pub peak_per_minute: u32,
}

/// Everything about one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderReport {
    /// The provider's name from the scenario.
    pub name: String,
    /// The address its listener was bound to.
    pub addr: SocketAddr,
    /// The limits it enforced.
    pub limits: Limits,
    /// One entry per source IP that connected, in IP order.
    pub sources: Vec<SourceReport>,
}

/// The simulator's findings so far (a snapshot) or at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Per provider, in scenario order.
    pub providers: Vec<ProviderReport>,
    /// Every accepted message, in acceptance order.
    pub messages: Vec<AcceptedMessage>,
    /// Late feedback (bounces, complaints) mailed so far, in sending order.
    #[serde(default)]
    pub feedback: Vec<SentFeedback>,
}

/// What a piece of late feedback was about, and how the MX answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentFeedback {
    /// `"bounce"` (an RFC 3464 report) or `"complaint"` (an ARF report).
    pub kind: String,
    /// The accepted recipient it is about.
    pub recipient: String,
    /// The message's `Message-ID`, as in [`AcceptedMessage::message_id`].
    pub message_id: String,
    /// Where it was mailed: the message's `MAIL FROM`, or the complaint
    /// address.
    pub to: String,
    /// The MX's last reply: `250 ...` when the report was taken, otherwise
    /// the refusal (or the connection error) that ended the attempt.
    pub answer: String,
}

impl SentFeedback {
    /// The MX took the report (`250` at the end of DATA).
    pub fn taken(&self) -> bool {
        self.answer.starts_with("250")
    }
}

/// A (Message-ID, recipient) pair accepted more than once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    /// The message's id as recorded.
    pub message_id: String,
    /// The recipient it reached more than once.
    pub recipient: String,
    /// How many times it was accepted.
    pub times: usize,
}

/// What the report needs to know about each provider besides the ledger.
pub(crate) struct ProviderInfo {
    pub name: String,
    pub addr: SocketAddr,
    pub limits: Limits,
}

impl Report {
    pub(crate) fn build(providers: &[ProviderInfo], ledger: &Ledger) -> Self {
        let providers = providers
            .iter()
            .map(|p| ProviderReport {
                name: p.name.clone(),
                addr: p.addr,
                limits: p.limits.clone(),
                sources: sources_of(&p.name, ledger),
            })
            .collect();
        Report {
            providers,
            messages: ledger.messages.clone(),
            feedback: ledger.feedback_sent.clone(),
        }
    }

    /// The counters of `source_ip` at `provider`, if it ever connected.
    pub fn source(&self, provider: &str, source_ip: IpAddr) -> Option<&SourceReport> {
        let p = self.providers.iter().find(|p| p.name == provider)?;
        p.sources.iter().find(|s| s.source_ip == source_ip)
    }

    /// Violations of every kind, everywhere. Zero for a well-behaved sender.
    pub fn total_violations(&self) -> u64 {
        let sources = self.providers.iter().flat_map(|p| &p.sources);
        sources.flat_map(|s| s.violations.values()).sum()
    }

    /// (Message-ID, recipient) pairs that were accepted more than once.
    pub fn duplicates(&self) -> Vec<Duplicate> {
        let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for m in &self.messages {
            for r in &m.recipients {
                *seen.entry((&m.message_id, r)).or_default() += 1;
            }
        }
        let dups = seen.into_iter().filter(|(_, n)| *n > 1);
        dups.map(|((id, rcpt), times)| Duplicate {
            message_id: id.to_string(),
            recipient: rcpt.to_string(),
            times,
        })
        .collect()
    }

    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), SimError> {
        let json = serde_json::to_string_pretty(self).expect("a report always serializes");
        std::fs::write(path, json + "\n").map_err(|source| SimError::WriteReport {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn sources_of(provider: &str, ledger: &Ledger) -> Vec<SourceReport> {
    let mine = ledger.sources.iter().filter(|((p, _), _)| p == provider);
    mine.map(|((_, ip), c)| SourceReport {
        source_ip: *ip,
        connections: c.connections,
        accepted: c.accepted,
        deferred: c.deferred,
        rejected: c.rejected,
        violations: c.violations.clone(),
        peak_per_minute: c.peak_per_minute,
    })
    .collect()
}

fn limit_text(limit: Option<u32>) -> String {
    limit.map_or_else(|| "-".to_string(), |n| n.to_string())
}

fn violations_text(v: &BTreeMap<LimitKind, u64>) -> String {
    if v.is_empty() {
        return "none".to_string();
    }
    let parts: Vec<String> = v.iter().map(|(k, n)| format!("{}={n}", k.name())).collect();
    parts.join(",")
}

/// The readable table printed at the end of a run.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:<15} {:>6} {:>9} {:>9} {:>9} {:>13}  violations",
            "provider", "source_ip", "conns", "accepted", "deferred", "rejected", "peak/min:lim"
        )?;
        for p in &self.providers {
            let limit = limit_text(p.limits.messages_per_minute);
            for s in &p.sources {
                let peak = format!("{}:{}", s.peak_per_minute, limit);
                writeln!(
                    f,
                    "{:<12} {:<15} {:>6} {:>9} {:>9} {:>9} {:>13}  {}",
                    p.name,
                    s.source_ip,
                    s.connections,
                    s.accepted,
                    s.deferred,
                    s.rejected,
                    peak,
                    violations_text(&s.violations)
                )?;
            }
        }
        let dups = self.duplicates().len();
        writeln!(
            f,
            "messages accepted: {}, duplicate (message-id, recipient) pairs: {dups}, violations: {}",
            self.messages.len(),
            self.total_violations()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, rcpt: &str) -> AcceptedMessage {
        AcceptedMessage {
            provider: "p".into(),
            server: "127.0.0.2:25".parse().unwrap(),
            source_ip: "127.0.0.9".parse().unwrap(),
            message_id: id.into(),
            mail_from: "a@b".into(),
            recipients: vec![rcpt.into()],
            size: 10,
            tls: false,
            accepted_at_unix_ms: 0,
        }
    }

    #[test]
    fn report_counts_duplicates_violations_and_renders() {
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let mut ledger = Ledger::default();
        ledger.accepted(message("<1@x>", "u@p"));
        ledger.accepted(message("<1@x>", "u@p"));
        ledger.accepted(message("<1@x>", "v@p"));
        ledger.violation("p", ip, LimitKind::MessagesPerMinute);
        ledger.observe_rate("p", ip, 3);
        let info = ProviderInfo {
            name: "p".into(),
            addr: "127.0.0.2:25".parse().unwrap(),
            limits: Limits {
                messages_per_minute: Some(2),
                ..Limits::default()
            },
        };
        let report = Report::build(&[info], &ledger);
        assert_eq!(report.total_violations(), 1);
        assert_eq!(report.source("p", ip).unwrap().accepted, 3);
        let dups = report.duplicates();
        assert_eq!(dups.len(), 1);
        assert_eq!((dups[0].recipient.as_str(), dups[0].times), ("u@p", 2));
        let table = report.to_string();
        assert!(table.contains("messages_per_minute=1"), "{table}");
        assert!(table.contains("3:2"), "{table}");
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
    }
}
