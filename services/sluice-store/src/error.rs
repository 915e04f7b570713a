use std::path::PathBuf;

/// Errors of the message log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be opened (missing permissions, another
    /// process holds it, or the files are damaged).
    #[error(
        "cannot open the message log in {dir}: {source}. Check that the directory is writable \
         and that no other `sluice` process uses it"
    )]
    Open {
        dir: PathBuf,
        #[source]
        source: fjall::Error,
    },
    /// The storage engine failed to read or write.
    #[error("message log storage error: {0}")]
    Engine(#[from] fjall::Error),
    /// A topic or group name the log cannot store.
    #[error("invalid {what} name `{name}`: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    /// The topic has not been created.
    #[error("topic `{topic}` does not exist; create it first (create_topic)")]
    UnknownTopic { topic: String },
    /// The partition number is outside the topic.
    #[error("topic `{topic}` has partitions 0..{partitions}; there is no partition {partition}")]
    NoSuchPartition {
        topic: String,
        partition: i32,
        partitions: i32,
    },
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
    /// A partition count below 1.
    #[error("topic `{topic}`: partitions must be at least 1, not {partitions}")]
    BadPartitionCount { topic: String, partitions: i32 },
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
    /// The blocking task running a store operation panicked or was cancelled.
    #[error("message log task failed: {0}")]
    Task(String),
}
