//! The SMTP client of the sender: one session per connection, generic over the
//! stream so tests drive it in memory, with PIPELINING when offered and
//! opportunistic (or required) STARTTLS.

mod connect;
mod reply;
mod session;

pub use connect::{ConnectOptions, Transport, connect};
pub use reply::{Capabilities, Reply, read_reply};
pub use session::{Session, Stage, TxOutcome};

/// Why a session failed without a usable reply.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("no reply within {0:?} ({1})")]
    Timeout(std::time::Duration, &'static str),
    #[error("server closed the connection")]
    Closed,
    #[error("protocol error: {reason}: {quoted:?}")]
    Protocol {
        reason: &'static str,
        quoted: String,
    },
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("TLS required but the server does not offer STARTTLS")]
    TlsRequired,
}

impl SmtpError {
    pub(crate) fn protocol(reason: &'static str, bytes: &[u8]) -> Self {
        let quoted = String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
            .trim_end()
            .to_owned();
        Self::Protocol { reason, quoted }
    }
}
