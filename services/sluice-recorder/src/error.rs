//! The recorder's one error type, and how it maps to gRPC status codes.

/// Everything that can go wrong in the recorder, its Query service and its
/// client commands.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The configuration is invalid; the message names the field.
    #[error("recorder configuration: {0}")]
    Config(String),
    /// The configuration file or environment was refused (names the origin,
    /// the key and the reason).
    #[error(transparent)]
    Configuration(#[from] sluice_node::ConfigError),
    /// A request argument is invalid; names the field and the reason.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// No token, or one that is neither a credential's nor a tenant's API key.
    #[error("{}", crate::auth::UNAUTHENTICATED)]
    Unauthenticated,
    /// The caller's role or tenant does not allow the call; says what would.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Cassandra/ScyllaDB could not be reached, or the keyspace is not
    /// migrated (a table is missing), or a migration failed.
    #[error(transparent)]
    CqlSetup(Box<sluice_cql::CqlError>),
    /// The message log (Kafka or the embedded log) could not be reached or
    /// failed an operation.
    #[error("message log: {0}")]
    Log(Box<sluice_log::LogError>),
    /// A CQL statement failed (after the retries the caller allows).
    #[error("Cassandra/ScyllaDB {context}: {reason}")]
    Cql { context: String, reason: String },
    /// The embedded ledger (fjall, in a data directory) failed.
    #[error("embedded ledger, {context}: {reason}")]
    Embedded { context: String, reason: String },
    /// A stored row could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The Query server's listener or transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A call to the Query service failed (client side).
    #[error("Query service: {} ({:?})", .0.message(), .0.code())]
    Remote(#[from] tonic::Status),
    /// The Query service could not be reached (client side).
    #[error(
        "cannot reach the Query service at {addr} ({reason}); start it with `sluice recorder` \
         or point --query-addr / SLUICE_QUERY_ADDR at a running recorder"
    )]
    QueryUnreachable { addr: String, reason: String },
    /// The work was stopped by shutdown before it finished.
    #[error("shut down before the work finished")]
    ShuttingDown,
}

impl RecorderError {
    /// A CQL failure with what was being done.
    pub(crate) fn cql(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::Cql {
            context: context.into(),
            reason: err.to_string(),
        }
    }
}

impl RecorderError {
    /// An embedded-ledger failure with what was being done.
    pub(crate) fn embedded(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::Embedded {
            context: context.into(),
            reason: err.to_string(),
        }
    }
}

impl From<sluice_cql::CqlError> for RecorderError {
    fn from(err: sluice_cql::CqlError) -> Self {
        Self::CqlSetup(Box::new(err))
    }
}

impl From<sluice_log::LogError> for RecorderError {
    fn from(err: sluice_log::LogError) -> Self {
        Self::Log(Box::new(err))
    }
}

impl From<RecorderError> for tonic::Status {
    fn from(err: RecorderError) -> Self {
        use tonic::Code;
        let code = match &err {
            RecorderError::InvalidArgument { .. } => Code::InvalidArgument,
            RecorderError::NotFound(_) => Code::NotFound,
            RecorderError::Unauthenticated => Code::Unauthenticated,
            RecorderError::PermissionDenied(_) => Code::PermissionDenied,
            RecorderError::Config(_) | RecorderError::Configuration(_) => Code::FailedPrecondition,
            RecorderError::CqlSetup(err) => match **err {
                sluice_cql::CqlError::MissingTable { .. } => Code::FailedPrecondition,
                sluice_cql::CqlError::Migration { .. } => Code::Internal,
                _ => Code::Unavailable,
            },
            RecorderError::Cql { .. } | RecorderError::Log(_) => Code::Unavailable,
            RecorderError::Transport(_) => Code::Unavailable,
            RecorderError::Embedded { .. } => Code::Unavailable,
            RecorderError::ShuttingDown | RecorderError::QueryUnreachable { .. } => {
                Code::Unavailable
            }
            RecorderError::Remote(status) => status.code(),
            RecorderError::Corrupt(_) => Code::Internal,
        };
        tonic::Status::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_grpc_codes() {
        let invalid = RecorderError::InvalidArgument {
            field: "from_day",
            reason: "not a date".into(),
        };
        let status = tonic::Status::from(invalid);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("from_day"));
        let missing = tonic::Status::from(RecorderError::NotFound("message m1".into()));
        assert_eq!(missing.code(), tonic::Code::NotFound);
        let down = tonic::Status::from(RecorderError::cql("select", "connection refused"));
        assert_eq!(down.code(), tonic::Code::Unavailable);
    }
}
