//! The control service's one error type, and how it maps to gRPC codes.

use std::path::PathBuf;

/// Everything that can go wrong in control, its stores and its server.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A request field is invalid; names the field and the reason. Nothing
    /// was changed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The embedded store's data directory could not be opened.
    #[error(
        "cannot open the control store in {}: {source}. Check that the directory is \
         writable and that no other process has it open",
        dir.display()
    )]
    Open {
        dir: PathBuf,
        #[source]
        source: fjall::Error,
    },
    /// The embedded store failed a read or a write.
    #[error("embedded control store: {0}")]
    Embedded(#[from] fjall::Error),
    /// Cassandra/ScyllaDB could not be reached, or the keyspace is not
    /// migrated (a table is missing).
    #[error(transparent)]
    CqlSetup(Box<sluice_cql::CqlError>),
    /// A CQL statement failed.
    #[error("Cassandra/ScyllaDB {context}: {reason}")]
    Cql { context: String, reason: String },
    /// No token, or one that matches no credential.
    #[error("{}", crate::auth::UNAUTHENTICATED)]
    Unauthenticated,
    /// The token's role does not allow the call; says which role does.
    #[error("{0}")]
    PermissionDenied(String),
    /// The change cannot be made in the current state (a delete of a record
    /// others still name); says who refers to it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The record a call names does not exist; says which.
    #[error("{0}")]
    NotFound(String),
    /// The configuration cannot be served as given; names the key.
    #[error("control configuration: {0}")]
    Config(String),
    /// Another writer changed the revision at the same time too often.
    #[error("the configuration revision is contended; retry the change")]
    Contended,
    /// A stored record could not be decoded.
    #[error("corrupt stored configuration: {0}")]
    Corrupt(String),
    /// A blocking task of the embedded store died.
    #[error("store task failed: {0}")]
    Task(String),
    /// A listener could not be bound, or a directory created; names the
    /// setting.
    #[error("{0}")]
    Listen(std::io::Error),
    /// The gRPC listener or transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A store that keeps part of its data elsewhere (`sluice dev`'s
    /// suppressions, in the recorder's ledger) failed there; says where.
    #[error("{0}")]
    Delegated(String),
}

impl ControlError {
    /// An invalid field with the reason.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A CQL failure with what was being done.
    pub(crate) fn cql(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::Cql {
            context: context.into(),
            reason: err.to_string(),
        }
    }
}

impl From<sluice_cql::CqlError> for ControlError {
    fn from(err: sluice_cql::CqlError) -> Self {
        Self::CqlSetup(Box::new(err))
    }
}

impl From<ControlError> for tonic::Status {
    fn from(err: ControlError) -> Self {
        use tonic::Code;
        let code = match &err {
            ControlError::InvalidArgument { .. } => Code::InvalidArgument,
            ControlError::Contended => Code::Aborted,
            ControlError::Unauthenticated => Code::Unauthenticated,
            ControlError::PermissionDenied(_) => Code::PermissionDenied,
            ControlError::FailedPrecondition(_) => Code::FailedPrecondition,
            ControlError::NotFound(_) => Code::NotFound,
            ControlError::CqlSetup(err) => match **err {
                sluice_cql::CqlError::MissingTable { .. } => Code::FailedPrecondition,
                sluice_cql::CqlError::Migration { .. } => Code::Internal,
                _ => Code::Unavailable,
            },
            ControlError::Cql { .. } | ControlError::Transport(_) => Code::Unavailable,
            ControlError::Open { .. }
            | ControlError::Embedded(_)
            | ControlError::Corrupt(_)
            | ControlError::Task(_)
            | ControlError::Delegated(_)
            | ControlError::Listen(_)
            | ControlError::Config(_) => Code::Internal,
        };
        tonic::Status::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_grpc_codes() {
        let status = tonic::Status::from(ControlError::invalid("address", "not an IP literal"));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "invalid address: not an IP literal");
        let down = tonic::Status::from(ControlError::cql("insert", "connection refused"));
        assert_eq!(down.code(), tonic::Code::Unavailable);
        assert_eq!(
            tonic::Status::from(ControlError::Contended).code(),
            tonic::Code::Aborted
        );
    }
}
