//! Limits on an egress path and how the configuration layers combine.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::gcra::GcraParams;
use crate::time::{MINUTE, SECOND};

/// Limits of one egress path (pool, source IP, site). Every field is optional: an unset
/// field inherits from the layer below, and a field unset in every layer means "no limit".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// At most this many messages in any sliding one-second window.
    pub messages_per_second: Option<u32>,
    /// At most this many messages in any sliding one-minute window.
    pub messages_per_minute: Option<u32>,
    /// At most this many messages in one UTC clock hour.
    pub messages_per_hour: Option<u32>,
    /// At most this many messages in one UTC calendar day.
    pub messages_per_day: Option<u32>,
    /// How many messages (or new connections) may leave back to back within the per-second,
    /// per-minute and new-connection limits. The window bound still holds; a larger burst
    /// lowers the sustained spacing to `window / (limit - burst + 1)`. Default 1 (smooth).
    /// For new connections it is capped at a quarter of `new_connections_per_minute`.
    pub burst: Option<u32>,
    /// At most this many SMTP connections open at once.
    pub max_connections: Option<u32>,
    /// At most this many new connections in any sliding one-minute window.
    pub new_connections_per_minute: Option<u32>,
    /// Close a connection after this many messages.
    pub messages_per_connection: Option<u32>,
    /// At most this many RCPT TO per transaction.
    pub recipients_per_transaction: Option<u32>,
}

impl Limits {
    /// Built-in defaults below every configured layer: conservative for an unknown site.
    pub const BUILTIN: Limits = Limits {
        messages_per_second: None,
        messages_per_minute: Some(600),
        messages_per_hour: None,
        messages_per_day: None,
        burst: Some(10),
        max_connections: Some(10),
        new_connections_per_minute: Some(60),
        messages_per_connection: Some(100),
        recipients_per_transaction: Some(100),
    };

    /// Field by field: `self` where set, otherwise `base`.
    pub fn over(self, base: Limits) -> Limits {
        Limits {
            messages_per_second: self.messages_per_second.or(base.messages_per_second),
            messages_per_minute: self.messages_per_minute.or(base.messages_per_minute),
            messages_per_hour: self.messages_per_hour.or(base.messages_per_hour),
            messages_per_day: self.messages_per_day.or(base.messages_per_day),
            burst: self.burst.or(base.burst),
            max_connections: self.max_connections.or(base.max_connections),
            new_connections_per_minute: self
                .new_connections_per_minute
                .or(base.new_connections_per_minute),
            messages_per_connection: self
                .messages_per_connection
                .or(base.messages_per_connection),
            recipients_per_transaction: self
                .recipients_per_transaction
                .or(base.recipients_per_transaction),
        }
    }

    /// The message-rate GCRAs (per second, per minute) this limit set defines,
    /// each over its window plus [`receiver_guard_ms`].
    pub(crate) fn rate_params(&self) -> [Option<GcraParams>; 2] {
        let burst = self.burst.unwrap_or(1);
        let guarded = |window: u64| window + receiver_guard_ms(window);
        [
            self.messages_per_second
                .map(|n| GcraParams::new(n, guarded(SECOND), burst)),
            self.messages_per_minute
                .map(|n| GcraParams::new(n, guarded(MINUTE), burst)),
        ]
    }

    /// The new-connection GCRA, if limited. Its burst is the message
    /// `burst` but at most a quarter of the limit: the GCRA keeps its window
    /// bound by spacing sends `W / (N - B + 1)` apart, so a message burst of
    /// 50 under the built-in 60 new connections a minute allowed only 11 a
    /// minute sustained. That starved a site of connections once its first
    /// burst was spent (20 messages a second at 100 per connection need 12
    /// a minute). Capped, at least three quarters of the limit is
    /// sustained.
    pub(crate) fn connect_params(&self) -> Option<GcraParams> {
        self.new_connections_per_minute.map(|n| {
            let burst = self.burst.unwrap_or(1).min((n / 4).max(1));
            GcraParams::new(n, MINUTE, burst)
        })
    }
}

/// How much longer than its window a message-rate limit is counted: 1 % of
/// the window plus 50 ms. The engine counts a send when it grants it; a
/// receiver counts it at `MAIL FROM`, after the connection's set-up (TCP,
/// banner, EHLO, STARTTLS) for the first message of a connection and almost
/// at once on a reused one. Counted over the bare window, N grants spaced
/// exactly `W / N` apart could reach the receiver less than `W` apart when
/// the first of them waited on a new connection, and the (N + 1)-th would be
/// one too many in the receiver's sliding window (measured: 2 refusals in 40
/// messages at 10 a minute). The guard absorbs that much difference in
/// set-up time (650 ms for a minute, 60 ms for a second) for a 1 % (per
/// minute) or 6 % (per second) lower sustained rate.
pub(crate) fn receiver_guard_ms(window_ms: u64) -> u64 {
    window_ms / 100 + 50
}

/// Overrides for one source IP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpLimits {
    /// Applies to every site sent from this IP, above the per-site layer.
    #[serde(default)]
    pub default: Limits,
    /// Applies to one site (by site name) sent from this IP; the top layer.
    #[serde(default)]
    pub sites: BTreeMap<String, Limits>,
}

/// All limit layers. For a path (pool, ip, site) the effective limits are, from top to
/// bottom: `ips.<ip>.sites.<site>`, `ips.<ip>.default`, `sites.<site>`, `default`, and the
/// built-in defaults ([`Limits::BUILTIN`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Defaults for every site.
    #[serde(default)]
    pub default: Limits,
    /// Per-site defaults, by site name (for example `google`, `outlook`).
    #[serde(default)]
    pub sites: BTreeMap<String, Limits>,
    /// Provider-wide limits, by provider name, counted per source IP across all sites of
    /// the provider. Message rates, message counts and connection limits apply;
    /// no built-in defaults are layered below these.
    #[serde(default)]
    pub providers: BTreeMap<String, Limits>,
    /// Per source IP overrides.
    #[serde(default)]
    pub ips: BTreeMap<IpAddr, IpLimits>,
}

impl LimitsConfig {
    /// Effective limits of the path (ip, site).
    pub fn for_path(&self, ip: IpAddr, site: &str) -> Limits {
        let mut limits = self.default.over(Limits::BUILTIN);
        if let Some(s) = self.sites.get(site) {
            limits = s.over(limits);
        }
        if let Some(o) = self.ips.get(&ip) {
            limits = o.default.over(limits);
            if let Some(s) = o.sites.get(site) {
                limits = s.over(limits);
            }
        }
        limits
    }

    /// Provider-wide limits, if any are configured for `provider`.
    pub fn for_provider(&self, provider: &str) -> Option<Limits> {
        self.providers.get(provider).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_top_down() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut cfg = LimitsConfig::default();
        cfg.default.messages_per_minute = Some(100);
        cfg.sites.insert(
            "google".into(),
            Limits {
                messages_per_minute: Some(200),
                max_connections: Some(3),
                ..Limits::default()
            },
        );
        let mut over = IpLimits::default();
        over.default.max_connections = Some(2);
        over.sites.insert(
            "google".into(),
            Limits {
                messages_per_minute: Some(50),
                ..Limits::default()
            },
        );
        cfg.ips.insert(ip, over);

        let g = cfg.for_path(ip, "google");
        assert_eq!(g.messages_per_minute, Some(50));
        assert_eq!(g.max_connections, Some(2));
        assert_eq!(g.recipients_per_transaction, Some(100));
        let other_ip: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(cfg.for_path(other_ip, "google").max_connections, Some(3));
        assert_eq!(cfg.for_path(other_ip, "x").messages_per_minute, Some(100));
    }
}
