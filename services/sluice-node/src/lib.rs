//! What every Sluice role shares.
//!
//! Every role (ingest, sender, recorder, control, ...) is a library with one
//! entry point of the same form:
//!
//! ```text
//! pub async fn run(listeners: <Role>Listeners, config: <Role>Config,
//!                  backends: <Role>Backends, shutdown: CancellationToken)
//!     -> Result<(), <Role>Error>
//! ```
//!
//! This crate holds the pieces of that shape: the [`CancellationToken`] the
//! caller cancels to stop a role, [`drain_within`] which bounds how long a
//! role may drain after that, [`Supervisor`] to run several roles in one
//! process, [`shutdown_on_signals`] for the binary, [`bind`] for listeners
//! named after their setting, and [`config`], the one configuration loader
//! (TOML file, then `SLUICE_<ROLE>_<KEY>` environment overrides, unknown keys
//! rejected) with [`Span`], the one duration format.
//! [`secret`] parses and verifies the hashed secrets (`sluice hash-secret`)
//! that ingest (API keys, SMTP passwords) and control (tokens) check;
//! [`auth`] holds the bearer-token credentials (name, role, token hash) that
//! control and the recorder's Query service check on every call.
//! [`tls`] is the one `[tls]` section (certificates reloaded on change,
//! mutual TLS, plaintext refused off loopback) and [`listen`] turns a bound
//! listener into gated, TLS-terminated connections for tonic and axum.

pub mod auth;
pub mod config;
pub mod deadline;
pub mod gate;
pub mod health;
mod lifecycle;
pub mod listen;
pub mod metrics;
pub mod probes;
pub mod reference;
pub mod secret;
pub mod shed;
mod supervisor;
pub mod tls;
pub mod trace;
pub mod verp;

pub use config::{ConfigError, RoleConfig};
pub use lifecycle::{DEFAULT_DRAIN, bind, default_drain, drain_within, shutdown_on_signals};
pub use sluice_shaping::Span;
pub use supervisor::Supervisor;
pub use tokio_util::sync::CancellationToken;
