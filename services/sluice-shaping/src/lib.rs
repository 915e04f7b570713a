//! The Sluice shaping engine: which source IP sends which message when.
//!
//! Pure logic: no I/O, no async, no clock reads (time is a [`Millis`] argument) and no
//! randomness of its own (the caller passes random values). All state is serializable
//! ([`Engine::snapshot`] / [`Engine::restore`]). See the crate `README.md` for the model
//! and the invariants the tests prove.
//!
//! - [`site`]: MX rollup of recipient domains into sites and providers.
//! - [`Limits`]: per egress path (pool, source IP, site) and per provider.
//! - [`reply`] and [`classify`]: reply rules driving adaptive backoff; bounce classes.
//! - [`warmup`]: IP warm-up plans and reputation signals.
//! - [`retry`]: the retry schedule and delay tiers.
//! - [`Engine`]: all of it together.

mod backoff;
pub mod classify;
mod config;
mod engine;
mod error;
mod gcra;
mod limits;
pub mod reply;
pub mod retry;
pub mod site;
mod time;
pub mod warmup;

pub use backoff::{Aimd, BackoffConfig};
pub use classify::{BounceClass, Classification, Classifier};
pub use config::{EngineConfig, IpConfig};
pub use engine::{
    Action, Blocked, Connection, Counters, Decision, Engine, Grant, IpRecord, IpState, PathEffect,
    PathId, PathRecord, PathState, PathView, PoolKey, ProviderRecord, Reconfigured, SiteKey,
    Snapshot, Verdict,
};
pub use error::ConfigError;
pub use gcra::{Gcra, GcraParams, WindowCount};
pub use limits::{IpLimits, Limits, LimitsConfig};
pub use reply::{EnhancedCode, RepliesConfig, Reply, ReplyRule, RuleAction};
pub use retry::{RetryConfig, RetryDecision, RetrySchedule, Tier};
pub use site::{Site, SiteResolver, SiteRule, SitesConfig};
pub use time::{DAY, HOUR, MINUTE, Millis, SECOND, Span};
pub use warmup::{PlanDay, Signal, WarmupConfig, WarmupPlan, WarmupState};
