//! [`LogError`]: the one error type of the message log, shared by both back
//! ends, with variants a service can answer its clients from (retry later,
//! fix the request, or report a fault). `kafka_code` maps rdkafka's codes.

use std::path::PathBuf;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// What to do when Kafka is not there, appended to [`LogError::Unavailable`].
const START_KAFKA: &str = "start it with `deploy/servers/kafka.sh start`, \
                           or point SLUICE_KAFKA_BROKERS at a running broker";

/// Errors of the message log (Kafka or the embedded log).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The back end did not answer in time or could not be reached.
    /// Retryable.
    #[error("Kafka is not reachable at {server} ({reason}). {START_KAFKA}")]
    Unavailable { server: String, reason: String },
    /// The producer's local queue (or the broker's quota) is full. Retryable
    /// after a pause.
    #[error("the message log at {server} is busy ({reason}); retry later with backoff")]
    Backpressure { server: String, reason: String },
    /// A record above the largest record the log takes.
    #[error(
        "a record of {size} bytes for topic `{topic}` is above the message log's limit of \
         {limit} bytes; send a smaller message"
    )]
    TooLarge {
        topic: String,
        size: usize,
        limit: usize,
    },
    /// Record headers beyond the log's limits (too many, a name of 0 or
    /// more than 255 bytes, a value above 4096 bytes): fix the request.
    #[error("record for topic `{topic}`: header `{name}` refused: {reason}")]
    InvalidHeader {
        topic: String,
        /// The header's name (shortened when long).
        name: String,
        reason: String,
    },
    /// The topic has not been created.
    #[error("topic `{topic}` does not exist; create it first (create_topic)")]
    TopicNotFound { topic: String },
    /// The partition number is outside the topic.
    #[error("topic `{topic}` has partitions 0..{partitions}; there is no partition {partition}")]
    PartitionNotFound {
        topic: String,
        partition: i32,
        partitions: i32,
    },
    /// A topic or group name the log cannot store.
    #[error("invalid {what} name `{name}`: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    /// A partition count below 1.
    #[error("topic `{topic}`: partitions must be at least 1, not {partitions}")]
    BadPartitionCount { topic: String, partitions: i32 },
    /// The topic exists with another partition count.
    #[error(
        "topic `{topic}` already exists with {existing} partitions, not {requested}; \
         a topic's partition count cannot change"
    )]
    PartitionMismatch {
        topic: String,
        existing: i32,
        requested: i32,
    },
    /// A committed offset beyond the end of the partition.
    #[error(
        "cannot commit offset {offset} for group `{group}` on {topic}/{partition}: \
         the partition ends at {end}"
    )]
    OffsetOutOfRange {
        group: String,
        topic: String,
        partition: i32,
        offset: i64,
        end: i64,
    },
    /// Stored bytes that do not decode: the data directory is damaged.
    #[error("the message log's data is damaged ({what}); restore the data directory from a backup")]
    Corrupt { what: String },
    /// The embedded log serves one member per group, and this group has one.
    #[error(
        "consumer group `{group}` already has a member in this process; the embedded log \
         gives a group's partitions to one member (run one reader per group, or use Kafka)"
    )]
    GroupBusy { group: String },
    /// The embedded log's data directory could not be opened (missing
    /// permissions, another process holds it, or the files are damaged).
    #[error(
        "cannot open the message log in {dir}: {source}. Check that the directory is writable \
         and that no other `sluice` process uses it"
    )]
    Open {
        dir: PathBuf,
        #[source]
        source: fjall::Error,
    },
    /// The embedded storage engine failed to read or write.
    #[error("message log storage error: {0}")]
    Engine(#[from] fjall::Error),
    /// A Kafka failure no other variant describes (configuration,
    /// authorization, a broker-side fault).
    #[error("Kafka at {server} failed: {source}")]
    Kafka {
        server: String,
        #[source]
        source: KafkaError,
    },
    /// A failure inside the log's own machinery (a background task
    /// panicked or stopped).
    #[error("message log internal error: {0}")]
    Internal(String),
}

impl LogError {
    /// True when the same call may succeed later unchanged: the back end was
    /// unreachable or busy. Everything else needs another request, an
    /// operator, or is a bug.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Backpressure { .. })
    }

    /// True for an unknown topic or partition.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::TopicNotFound { .. } | Self::PartitionNotFound { .. }
        )
    }

    /// Classifies a Kafka client error of a call to the cluster at `server`
    /// about `topic` (when the call concerned one).
    pub fn from_kafka(err: KafkaError, server: &str, topic: Option<&str>) -> Self {
        let server = server.to_owned();
        let code = match &err {
            KafkaError::AdminOp(code) => Some(*code),
            other => other.rdkafka_error_code(),
        };
        let Some(code) = code else {
            return Self::Kafka {
                server,
                source: err,
            };
        };
        match classify(code) {
            Class::Unavailable => Self::Unavailable {
                server,
                reason: err.to_string(),
            },
            Class::Backpressure => Self::Backpressure {
                server,
                reason: err.to_string(),
            },
            Class::NotFound => Self::TopicNotFound {
                topic: topic.unwrap_or("(unnamed)").to_owned(),
            },
            Class::TooLarge => Self::TooLarge {
                topic: topic.unwrap_or("(unnamed)").to_owned(),
                size: 0,
                limit: crate::MAX_RECORD_BYTES,
            },
            Class::Other => Self::Kafka {
                server,
                source: err,
            },
        }
    }

    /// Fills in the record size of a [`LogError::TooLarge`] the broker
    /// reported (it does not say the size); other errors pass unchanged.
    pub(crate) fn with_size(mut self, record: usize) -> Self {
        if let Self::TooLarge { size, .. } = &mut self {
            *size = record;
        }
        self
    }
}

/// What a Kafka error code means to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Unavailable,
    Backpressure,
    NotFound,
    TooLarge,
    Other,
}

/// The class of an rdkafka error code.
pub(crate) fn classify(code: RDKafkaErrorCode) -> Class {
    use RDKafkaErrorCode as C;
    match code {
        C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::Resolve
        | C::MessageTimedOut
        | C::OperationTimedOut
        | C::TimedOutQueue
        | C::RequestTimedOut
        | C::NetworkException
        | C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::BrokerNotAvailable
        | C::ReplicaNotAvailable
        | C::CoordinatorLoadInProgress
        | C::CoordinatorNotAvailable
        | C::NotCoordinator
        | C::WaitingForCoordinator
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::ISRInsufficient
        | C::KafkaStorageError
        | C::RebalanceInProgress => Class::Unavailable,
        C::QueueFull | C::ThrottlingQuotaExceeded => Class::Backpressure,
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => Class::NotFound,
        C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize => Class::TooLarge,
        _ => Class::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce(code: RDKafkaErrorCode) -> LogError {
        LogError::from_kafka(
            KafkaError::MessageProduction(code),
            "b1:9092",
            Some("sluice.events"),
        )
    }

    #[test]
    fn transport_and_timeouts_are_unavailable_and_retryable() {
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::NotLeaderForPartition,
        ] {
            let err = produce(code);
            assert!(
                matches!(err, LogError::Unavailable { .. }),
                "{code:?}: {err}"
            );
            assert!(err.is_retryable());
            let text = err.to_string();
            assert!(text.contains("b1:9092"), "{text}");
            assert!(text.contains("deploy/servers/kafka.sh start"), "{text}");
        }
    }

    #[test]
    fn a_full_queue_is_backpressure() {
        let err = produce(RDKafkaErrorCode::QueueFull);
        assert!(matches!(err, LogError::Backpressure { .. }), "{err}");
        assert!(err.is_retryable());
    }

    #[test]
    fn an_oversized_record_names_its_size_and_the_limit() {
        let err = produce(RDKafkaErrorCode::MessageSizeTooLarge).with_size(40_000_000);
        let LogError::TooLarge { topic, size, limit } = &err else {
            panic!("not TooLarge: {err}");
        };
        assert_eq!((topic.as_str(), *size), ("sluice.events", 40_000_000));
        assert_eq!(*limit, crate::MAX_RECORD_BYTES);
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("40000000 bytes"), "{err}");
    }

    #[test]
    fn unknown_topics_are_not_found() {
        let err = LogError::from_kafka(
            KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
            "b1:9092",
            Some("t"),
        );
        assert!(matches!(&err, LogError::TopicNotFound { topic } if topic == "t"));
        assert!(err.is_not_found() && !err.is_retryable());
    }

    #[test]
    fn anything_else_is_a_kafka_failure_naming_the_server() {
        let err = produce(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert!(matches!(err, LogError::Kafka { .. }), "{err}");
        assert!(err.to_string().contains("b1:9092"));
        let err = LogError::from_kafka(
            KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut),
            "b1:9092",
            None,
        );
        assert!(err.is_retryable(), "admin timeouts are retryable: {err}");
        let err = LogError::from_kafka(KafkaError::Canceled, "b1:9092", None);
        assert!(matches!(err, LogError::Kafka { .. }), "{err}");
        assert!(!err.is_retryable());
    }
}
