//! The one error type of ingest and how each front door reports it.

/// Everything that can go wrong in ingest. Every variant names the field or
/// the server involved and tells the client what to do.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No or wrong credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The input is malformed; nothing was published.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The caller may not do this (e.g. send from another tenant's domain).
    #[error("forbidden {field}: {reason}")]
    Forbidden { field: String, reason: String },
    /// The input exceeds a configured size.
    #[error("{field} too large: {actual} bytes, the limit is {limit} bytes")]
    TooLarge {
        field: String,
        limit: usize,
        actual: usize,
    },
    /// The tenant's rate quota is used up; retry later.
    #[error(
        "rate quota of tenant {tenant} exceeded ({quota} recipients/s for the cluster; \
         this node's share: {share}/s of {live_nodes} live ingest nodes); retry later"
    )]
    RateLimited {
        tenant: String,
        quota: u32,
        share: u32,
        live_nodes: u32,
    },
    /// The node has too much work in flight; retry later with backoff.
    #[error("ingest is overloaded: {0}; retry later with backoff")]
    Backpressure(String),
    /// The log did not acknowledge. `durable` lists the message ids
    /// whose records it did acknowledge; the others were not accepted.
    #[error(
        "the message log did not acknowledge the submission ({reason}); durable message ids: [{}]; \
         the other recipients were not accepted, retry them (same idempotency key reuses the ids)",
        durable.join(", ")
    )]
    Unavailable {
        reason: String,
        durable: Vec<String>,
    },
    /// The recorder's suppressions could not be checked (fail closed):
    /// nothing was published.
    #[error(
        "cannot check suppressions with {via} ({reason}); nothing was accepted, \
         retry later (operators: is the recorder running and reachable?)"
    )]
    SuppressionsUnavailable { via: String, reason: String },
    /// The shared idempotency keys could not be read or written.
    #[error(
        "idempotency keys are unavailable via {via}: {reason}; the submission was not \
         accepted, retry it with the same idempotency_key"
    )]
    KeysUnavailable { via: String, reason: String },
    /// The suppression list could not be read or changed. A change may
    /// have been made in part; every change repeats safely.
    #[error(
        "the suppression list is unavailable: {0}; retry later (repeating the request is safe: \
         adds replace, removes of what is gone remove nothing)"
    )]
    ListUnavailable(String),
    /// Control did not answer a change of the tenant's webhooks (or refused
    /// this node's token). Repeating the change is safe.
    #[error("control is unavailable: {0}; retry later (repeating the request is safe)")]
    ControlUnavailable(String),
    /// The call needs something this node is not set up for.
    #[error("not available on this node: {0}")]
    NotConfigured(String),
    /// The client took too long to send part of its request.
    #[error("{stage} not received within {limit:?}; nothing was accepted, send it again faster")]
    Timeout {
        stage: &'static str,
        limit: std::time::Duration,
    },
    /// The same idempotency key is being processed right now.
    #[error("idempotency_key {0:?} is being processed by another request; retry shortly")]
    InFlight(String),
    /// Bad node configuration (startup only).
    #[error("configuration: {0}")]
    Config(String),
    /// A listener or socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A bug or an unexpected library failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    /// Shorthand for [`IngestError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`IngestError::Forbidden`].
    pub fn forbidden(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Forbidden {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The answer to a publish the message log failed; `durable` lists the
    /// message ids it acknowledged anyway. A full log queue is backpressure
    /// and an oversized record is too large (both only when nothing became
    /// durable, so no acknowledged id is lost); everything else is
    /// unavailable, with the durable ids.
    pub fn from_log(err: sluice_log::LogError, durable: Vec<String>) -> Self {
        use sluice_log::LogError;
        match err {
            LogError::Backpressure { .. } if durable.is_empty() => {
                Self::Backpressure(err.to_string())
            }
            LogError::TooLarge { size, limit, .. } if durable.is_empty() => Self::TooLarge {
                field: "message (as stored in the log, with its envelope)".into(),
                limit,
                actual: size,
            },
            err => Self::Unavailable {
                reason: err.to_string(),
                durable,
            },
        }
    }

    /// Message ids that are durable despite this error (partial publish).
    pub fn durable_ids(&self) -> &[String] {
        match self {
            Self::Unavailable { durable, .. } => durable,
            _ => &[],
        }
    }

    /// A short, fixed name of this error's kind, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Invalid { .. } => "invalid",
            Self::Forbidden { .. } => "forbidden",
            Self::TooLarge { .. } => "too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Backpressure(_) => "backpressure",
            Self::Unavailable { .. } => "unavailable",
            Self::SuppressionsUnavailable { .. } => "suppressions_unavailable",
            Self::KeysUnavailable { .. } => "keys_unavailable",
            Self::ListUnavailable(_) => "list_unavailable",
            Self::ControlUnavailable(_) => "control_unavailable",
            Self::NotConfigured(_) => "not_configured",
            Self::InFlight(_) => "in_flight",
            Self::Timeout { .. } => "timeout",
            Self::Config(_) | Self::Io(_) | Self::Internal(_) => "internal",
        }
    }

    /// The gRPC status code of this error.
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::Invalid { .. } => Code::InvalidArgument,
            Self::Forbidden { .. } => Code::PermissionDenied,
            Self::TooLarge { .. } => Code::InvalidArgument,
            Self::RateLimited { .. } | Self::Backpressure(_) => Code::ResourceExhausted,
            Self::Unavailable { .. }
            | Self::SuppressionsUnavailable { .. }
            | Self::KeysUnavailable { .. }
            | Self::ListUnavailable(_)
            | Self::ControlUnavailable(_) => Code::Unavailable,
            Self::NotConfigured(_) => Code::Unimplemented,
            Self::InFlight(_) => Code::Aborted,
            Self::Timeout { .. } => Code::DeadlineExceeded,
            Self::Config(_) | Self::Io(_) | Self::Internal(_) => Code::Internal,
        }
    }

    /// The HTTP status of this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Unauthenticated(_) => 401,
            Self::Invalid { .. } => 400,
            Self::Forbidden { .. } => 403,
            Self::TooLarge { .. } => 413,
            Self::RateLimited { .. } | Self::Backpressure(_) => 429,
            Self::Unavailable { .. }
            | Self::SuppressionsUnavailable { .. }
            | Self::KeysUnavailable { .. }
            | Self::ListUnavailable(_)
            | Self::ControlUnavailable(_) => 503,
            Self::NotConfigured(_) => 501,
            Self::InFlight(_) => 409,
            Self::Timeout { .. } => 408,
            Self::Config(_) | Self::Io(_) | Self::Internal(_) => 500,
        }
    }

    /// The SMTP reply code and enhanced status code of this error.
    pub fn smtp_reply(&self) -> (u16, &'static str) {
        match self {
            Self::Unauthenticated(_) => (535, "5.7.8"),
            Self::Invalid { .. } => (554, "5.6.0"),
            Self::Forbidden { .. } => (550, "5.7.1"),
            Self::TooLarge { .. } => (552, "5.3.4"),
            Self::RateLimited { .. } => (451, "4.7.1"),
            Self::Backpressure(_) => (452, "4.3.1"),
            Self::Unavailable { .. }
            | Self::SuppressionsUnavailable { .. }
            | Self::KeysUnavailable { .. }
            | Self::ListUnavailable(_)
            | Self::ControlUnavailable(_)
            | Self::InFlight(_) => (451, "4.3.0"),
            Self::NotConfigured(_) => (502, "5.5.1"),
            Self::Timeout { .. } => (451, "4.4.2"),
            Self::Config(_) | Self::Io(_) | Self::Internal(_) => (451, "4.3.0"),
        }
    }
}

impl From<sluice_log::LogError> for IngestError {
    fn from(err: sluice_log::LogError) -> Self {
        Self::from_log(err, Vec::new())
    }
}

/// Metadata key that carries durable message ids of a partial failure.
pub const DURABLE_IDS_METADATA: &str = "sluice-durable-ids";

impl From<IngestError> for tonic::Status {
    fn from(err: IngestError) -> Self {
        let mut status = tonic::Status::new(err.grpc_code(), err.to_string());
        if !err.durable_ids().is_empty()
            && let Ok(value) = err.durable_ids().join(",").parse()
        {
            status.metadata_mut().insert(DURABLE_IDS_METADATA, value);
        }
        status
    }
}

impl From<sluice_node::ConfigError> for IngestError {
    fn from(err: sluice_node::ConfigError) -> Self {
        // The loader's message already names the role, origin, key and reason.
        Self::Config(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backpressure_maps_to_retryable_codes_everywhere() {
        let err = IngestError::Backpressure("queue full".into());
        assert_eq!(err.grpc_code(), tonic::Code::ResourceExhausted);
        assert_eq!(err.http_status(), 429);
        assert_eq!(err.smtp_reply().0, 452);
        let err = IngestError::Unavailable {
            reason: "timeout".into(),
            durable: vec!["A".into()],
        };
        assert_eq!(err.grpc_code(), tonic::Code::Unavailable);
        assert_eq!(err.http_status(), 503);
        assert_eq!(err.smtp_reply().0, 451);
        let status = tonic::Status::from(err);
        assert_eq!(
            status
                .metadata()
                .get(DURABLE_IDS_METADATA)
                .map(|v| v.to_str().ok()),
            Some(Some("A"))
        );
    }

    #[test]
    fn log_failures_map_to_retry_later_or_too_large() {
        use sluice_log::LogError;
        let busy = || LogError::Backpressure {
            server: "b1:9092".into(),
            reason: "Local: Queue full".into(),
        };
        let err = IngestError::from(busy());
        assert_eq!(err.grpc_code(), tonic::Code::ResourceExhausted);
        let down = LogError::Unavailable {
            server: "b1:9092".into(),
            reason: "all brokers down".into(),
        };
        let err = IngestError::from(down);
        assert_eq!(err.grpc_code(), tonic::Code::Unavailable);
        assert!(err.to_string().contains("b1:9092"), "{err}");
        let big = LogError::TooLarge {
            topic: "sluice.outbound.default".into(),
            size: 40_000_000,
            limit: 33_554_432,
        };
        let err = IngestError::from(big);
        assert_eq!(err.grpc_code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().contains("40000000 bytes"), "{err}");
        // Partial publishes keep the durable ids, whatever the cause.
        let err = IngestError::from_log(busy(), vec!["A".into()]);
        assert_eq!(err.grpc_code(), tonic::Code::Unavailable);
        assert_eq!(err.durable_ids(), ["A".to_owned()]);
    }

    #[test]
    fn invalid_input_names_the_field() {
        let err = IngestError::invalid("recipients[2].address", "missing @");
        assert_eq!(err.to_string(), "invalid recipients[2].address: missing @");
        assert_eq!(err.http_status(), 400);
        assert_eq!(err.smtp_reply(), (554, "5.6.0"));
    }
}
