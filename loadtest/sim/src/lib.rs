//! Sluice's ISP simulator: real SMTP servers on loopback addresses that play
//! Gmail, Yahoo, Outlook and small domains, enforce per-source-IP limits with
//! those providers' deferral replies, and record every message they accept
//! and every limit a client broke.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_sim::SimError> {
//! let scenario = sluice_sim::Scenario::load("loadtest/scenarios/five-providers.toml".as_ref())?;
//! let sim = sluice_sim::Simulator::start(scenario).await?;
//! println!("gmail listens on {:?}", sim.addr("gmail"));
//! // ... send mail ...
//! let report = sim.shutdown().await;
//! assert_eq!(report.total_violations(), 0);
//! # Ok(()) }
//! ```

mod conn;
mod error;
mod feedback;
mod ledger;
mod limits;
mod message;
mod outbox;
mod provider;
mod reply;
mod report;
mod rng;
mod scenario;
mod server;
mod session;
#[cfg(test)]
mod session_tests;
mod sim;
mod tls;

pub use error::SimError;
pub use reply::LimitKind;
pub use report::{AcceptedMessage, Duplicate, ProviderReport, Report, SentFeedback, SourceReport};
pub use scenario::{Feedback, Limits, ProviderConfig, Scenario, Style};
pub use sim::{SimHandle, Simulator};
pub use sluice_smtp::Reply;
