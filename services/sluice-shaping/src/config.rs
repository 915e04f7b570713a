//! The engine's configuration: one TOML/serde document.

use std::net::IpAddr;

use serde::Deserialize;

use crate::backoff::BackoffConfig;
use crate::limits::LimitsConfig;
use crate::reply::RepliesConfig;
use crate::retry::RetryConfig;
use crate::site::SitesConfig;
use crate::warmup::WarmupConfig;

/// Everything the shaping engine of one sender node needs. Every section is optional and
/// defaults to the built-in behaviour.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// The source IPs this node owns, each in one pool.
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// MX rollup rules.
    #[serde(default)]
    pub sites: SitesConfig,
    /// Limits per egress path and per provider.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Adaptive backoff (AIMD) parameters.
    #[serde(default)]
    pub backoff: BackoffConfig,
    /// Reply rules.
    #[serde(default)]
    pub replies: RepliesConfig,
    /// Warm-up plans and their rules.
    #[serde(default)]
    pub warmup: WarmupConfig,
    /// Retry schedule and delay tiers.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// One source IP of this node.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpConfig {
    /// The address mail leaves from.
    pub address: IpAddr,
    /// The pool the IP belongs to; messages of a pool only leave from its IPs.
    pub pool: String,
    /// Name of the warm-up plan the IP follows; unset means the IP is warmed.
    #[serde(default)]
    pub warmup_plan: Option<String>,
}
