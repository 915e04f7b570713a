//! The scenario file: which providers to play, where, and how they behave.
//!
//! The doc comments on these types are the reference for the TOML format;
//! `docs/simulator.md` reproduces them.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::SimError;

/// A whole scenario: a seed and the list of providers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seed of the random number generator behind `temp_failure_rate` and
    /// `perm_failure_rate`. Each provider draws from its own generator seeded
    /// with `seed + provider index`, so one provider's traffic does not shift
    /// another's draws. Default: 0.
    #[serde(default)]
    pub seed: u64,
    /// The providers to simulate, one SMTP listener each. At least one.
    #[serde(rename = "provider")]
    pub providers: Vec<ProviderConfig>,
}

/// One simulated provider: one listener, its domains, limits and quirks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique name, used in the report and in log lines, e.g. `"gmail"`.
    pub name: String,
    /// Which real provider's replies to give when a limit is exceeded:
    /// `"gmail"`, `"yahoo"`, `"outlook"` or `"generic"`. Default: `"generic"`.
    #[serde(default)]
    pub style: Style,
    /// Address to listen on, e.g. `"127.0.0.2:2525"`. Port 0 picks a free
    /// port; the bound address is in the handle and printed by the binary.
    pub listen: SocketAddr,
    /// Host name in the banner and the EHLO reply. Default: `"mx.<name>.sim"`.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Domains this server accepts mail for (compared case-insensitively).
    /// `RCPT TO` any other domain gets `550 5.7.1 relaying denied`.
    pub domains: Vec<String>,
    /// Per-source-IP limits. Omitted fields mean "no limit".
    #[serde(default)]
    pub limits: Limits,
    /// Seconds a (source IP, sender, recipient) triplet is greylisted: the
    /// first `RCPT TO` gets `451 4.7.1`, and so does every retry until this
    /// many seconds have passed since the first. Omitted or 0: no greylisting.
    #[serde(default)]
    pub greylist_secs: u64,
    /// Local parts that do not exist: `RCPT TO` gets `550 5.1.1`.
    #[serde(default)]
    pub unknown_users: Vec<String>,
    /// Local parts whose mailbox is full for now: `RCPT TO` gets `452 4.2.2`.
    #[serde(default)]
    pub mailbox_full: Vec<String>,
    /// Local parts whose mailbox is full for good: `RCPT TO` gets `552 5.2.2`.
    #[serde(default)]
    pub mailbox_full_permanent: Vec<String>,
    /// Fraction (0.0 to 1.0) of messages answered `451 4.3.0` at the end of
    /// DATA instead of being accepted. Drawn from the seeded generator.
    #[serde(default)]
    pub temp_failure_rate: f64,
    /// Fraction (0.0 to 1.0) of messages answered `554 5.7.0` at the end of
    /// DATA instead of being accepted. Drawn after the temporary failure.
    #[serde(default)]
    pub perm_failure_rate: f64,
    /// Milliseconds to wait after accepting a connection before the `220`
    /// banner. Default: 0.
    #[serde(default)]
    pub banner_delay_ms: u64,
    /// Milliseconds to wait after the final `.` of DATA before the reply.
    /// Default: 0.
    #[serde(default)]
    pub data_reply_delay_ms: u64,
    /// Offer STARTTLS with a self-signed certificate generated at start.
    /// Default: true.
    #[serde(default = "default_true")]
    pub starttls: bool,
    /// Largest message in bytes, advertised as `SIZE`; bigger ones get
    /// `552 5.3.4`. Default: 36700160 (35 MiB).
    #[serde(default = "default_max_size")]
    pub max_message_size: usize,
    /// Seconds of client silence before the server says `421 4.4.2` and
    /// closes. Default: 300.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// Mail the provider sends back later about messages it accepted, as
    /// real mailbox providers do: delayed bounces and spam complaints.
    /// Omitted: none.
    #[serde(default)]
    pub feedback: Option<Feedback>,
    /// Keep every accepted message's bytes in memory, for tests that read
    /// what arrived (`SimHandle::bodies_to`). Default: false (a load run
    /// would hold every message it took).
    #[serde(default)]
    pub keep_bodies: bool,
}

/// Late feedback about accepted mail. Each accepted recipient is picked (or
/// not) by a hash of its address, so the same recipients are picked in every
/// run: a recipient whose hash falls below `bounce_share` bounces, one
/// between `bounce_share` and `bounce_share + complaint_share` complains.
/// Feedback goes to the MX given at start (`--feedback-mx`, or
/// `SimHandle::send_feedback_to`); until one is given it waits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    /// Fraction (0.0 to 1.0) of accepted recipients whose mailbox turns out
    /// to be disabled after acceptance: a delivery status notification
    /// (RFC 3464, `5.1.1`) is mailed to the message's `MAIL FROM` (the
    /// sender's VERP return path). Default: 0.
    #[serde(default)]
    pub bounce_share: f64,
    /// Fraction (0.0 to 1.0) of accepted recipients who press "this is
    /// spam": an ARF report (RFC 5965, `Feedback-Type: abuse`) with the
    /// original headers is mailed to `complaint_to`. Default: 0.
    #[serde(default)]
    pub complaint_share: f64,
    /// The sender's feedback-loop address that complaints go to, e.g.
    /// `"fbl@sluice.test"`. Required when `complaint_share` is above 0.
    #[serde(default)]
    pub complaint_to: Option<String>,
    /// Milliseconds after acceptance before the feedback is sent.
    /// Default: 1000.
    #[serde(default = "default_feedback_delay")]
    pub delay_ms: u64,
}

fn default_feedback_delay() -> u64 {
    1000
}

/// Per-source-IP limits. A client that goes past one is answered with the
/// provider's deferral reply and the attempt is counted as a violation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Concurrent connections from one source IP. The connection past the
    /// limit gets the deferral reply instead of the banner and is closed.
    #[serde(default)]
    pub connections_per_ip: Option<u32>,
    /// Messages (MAIL transactions) on one connection. The `MAIL FROM` past
    /// the limit gets the deferral reply.
    #[serde(default)]
    pub messages_per_connection: Option<u32>,
    /// Messages from one source IP in any sliding 60-second window, counted
    /// at `MAIL FROM` (transactions the client aborts before DATA completes
    /// are not counted). The `MAIL FROM` past the limit gets the deferral reply.
    #[serde(default)]
    pub messages_per_minute: Option<u32>,
    /// Recipients in one transaction. The `RCPT TO` past the limit gets
    /// `452 4.5.3`.
    #[serde(default)]
    pub recipients_per_message: Option<u32>,
}

/// Whose deferral replies to imitate.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// Gmail: `421 4.7.28 ... unusual rate of unsolicited mail`, `421 4.7.0`.
    Gmail,
    /// Yahoo: `421 4.7.0 [TSS04] Messages from x.x.x.x temporarily deferred`.
    Yahoo,
    /// Outlook / Microsoft 365: `451 4.7.500 Server busy`, `RP-001`, `4.3.2`.
    Outlook,
    /// Any small domain: `421 4.7.0 Too many connections` and the like.
    #[default]
    Generic,
}

fn default_true() -> bool {
    true
}

fn default_max_size() -> usize {
    36_700_160
}

fn default_idle() -> u64 {
    300
}

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::ReadScenario {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates scenario TOML text.
    pub fn parse(text: &str) -> Result<Self, SimError> {
        let scenario: Scenario = toml::from_str(text).map_err(Box::new)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks what serde cannot: names unique, rates in range, and so on.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.providers.is_empty() {
            return invalid("a scenario needs at least one [[provider]]");
        }
        let mut names = std::collections::BTreeSet::new();
        for p in &self.providers {
            if !names.insert(p.name.as_str()) {
                return invalid(&format!("provider name {:?} is used twice", p.name));
            }
            p.validate()?;
        }
        Ok(())
    }
}

impl ProviderConfig {
    /// The host name shown in the banner and EHLO reply.
    pub fn host(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| format!("mx.{}.sim", self.name))
    }

    fn validate(&self) -> Result<(), SimError> {
        let who = &self.name;
        if self.name.trim().is_empty() {
            return invalid("a provider needs a non-empty name");
        }
        if self.domains.is_empty() {
            return invalid(&format!("provider {who}: `domains` is empty"));
        }
        for (field, rate) in [
            ("temp_failure_rate", self.temp_failure_rate),
            ("perm_failure_rate", self.perm_failure_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return invalid(&format!("provider {who}: {field} must be in 0.0..=1.0"));
            }
        }
        let l = &self.limits;
        let limits = [
            l.connections_per_ip,
            l.messages_per_connection,
            l.messages_per_minute,
            l.recipients_per_message,
        ];
        if limits.contains(&Some(0)) {
            return invalid(&format!(
                "provider {who}: a limit of 0 would refuse all mail"
            ));
        }
        match &self.feedback {
            Some(feedback) => feedback.validate(who),
            None => Ok(()),
        }
    }
}

impl Feedback {
    /// The feedback `recipient` gets once accepted: `"bounce"`,
    /// `"complaint"` or none (the same in every run).
    pub fn kind_for(&self, recipient: &str) -> Option<&'static str> {
        crate::feedback::pick(self, recipient).map(|kind| kind.name())
    }

    fn validate(&self, who: &str) -> Result<(), SimError> {
        for (field, share) in [
            ("bounce_share", self.bounce_share),
            ("complaint_share", self.complaint_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return invalid(&format!(
                    "provider {who}: feedback.{field} must be in 0.0..=1.0"
                ));
            }
        }
        if self.bounce_share + self.complaint_share > 1.0 {
            return invalid(&format!(
                "provider {who}: feedback.bounce_share + feedback.complaint_share must be at most 1.0"
            ));
        }
        let address = self.complaint_to.as_deref().unwrap_or("");
        if self.complaint_share > 0.0 && !address.contains('@') {
            return invalid(&format!(
                "provider {who}: feedback.complaint_to must be an address when complaint_share is above 0"
            ));
        }
        Ok(())
    }
}

fn invalid(msg: &str) -> Result<(), SimError> {
    Err(SimError::Invalid(msg.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[provider]]
        name = "small"
        listen = "127.0.0.1:0"
        domains = ["small.test"]
    "#;

    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = Scenario::parse(MINIMAL).unwrap();
        let p = &s.providers[0];
        assert_eq!(p.style, Style::Generic);
        assert!(p.starttls);
        assert_eq!(p.limits, Limits::default());
        assert_eq!(p.host(), "mx.small.sim");
        assert_eq!(p.idle_timeout_secs, 300);
    }

    #[test]
    fn unknown_field_is_refused() {
        let text = MINIMAL.replace("domains", "domain = 1\ndomains");
        let err = Scenario::parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn duplicate_names_and_bad_rates_are_refused() {
        let twice = format!("{MINIMAL}{MINIMAL}");
        assert!(
            Scenario::parse(&twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        let rate = MINIMAL.replace("domains", "temp_failure_rate = 1.5\ndomains");
        assert!(
            Scenario::parse(&rate)
                .unwrap_err()
                .to_string()
                .contains("0.0..=1.0")
        );
        let zero = format!("{MINIMAL}\n[provider.limits]\nmessages_per_minute = 0\n");
        assert!(
            Scenario::parse(&zero)
                .unwrap_err()
                .to_string()
                .contains("limit of 0")
        );
    }

    #[test]
    fn feedback_tables_are_checked_field_by_field() {
        let with = |table: &str| format!("{MINIMAL}\n[provider.feedback]\n{table}\n");
        let refused = |table: &str| Scenario::parse(&with(table)).unwrap_err().to_string();
        assert!(refused("bounce_share = 1.2").contains("feedback.bounce_share must be in"));
        assert!(refused("bounce_share = 0.6\ncomplaint_share = 0.6").contains("at most 1.0"));
        assert!(refused("complaint_share = 0.1").contains("feedback.complaint_to"));
        assert!(refused("bounce_rate = 0.1").contains("unknown field"));
        let ok = Scenario::parse(&with("bounce_share = 0.1")).unwrap();
        let feedback = ok.providers[0].feedback.as_ref().unwrap();
        assert_eq!((feedback.delay_ms, feedback.complaint_share), (1000, 0.0));
    }

    #[test]
    fn shipped_example_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/five-providers.toml"
        );
        let s = Scenario::load(Path::new(path)).unwrap();
        assert_eq!(s.providers.len(), 5);
    }
}
