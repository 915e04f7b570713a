//! The SMTP client of the sender: one session per connection, generic over the
//! stream so tests drive it in memory, with PIPELINING when offered and
//! opportunistic (or required) STARTTLS.

mod connect;
mod session;

pub use connect::{ConnectOptions, TlsClients, Transport, connect};
pub use session::{Session, Stage, TxOutcome};
pub use sluice_smtp::{Capabilities, Reply};

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

impl From<sluice_smtp::ReplyError> for SmtpError {
    fn from(err: sluice_smtp::ReplyError) -> Self {
        match err {
            sluice_smtp::ReplyError::Io(err) => Self::Io(err),
            sluice_smtp::ReplyError::Closed => Self::Closed,
            sluice_smtp::ReplyError::Protocol { reason, quoted } => {
                Self::Protocol { reason, quoted }
            }
        }
    }
}
