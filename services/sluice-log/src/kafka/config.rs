use rdkafka::ClientConfig;

/// Where the Kafka cluster is and how Sluice's clients talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated `host:port` pairs.
    pub brokers: String,
    /// Client id reported to the brokers, shows up in their logs and metrics.
    pub client_id: String,
    /// How long the producer waits for more records to put in one request
    /// (`linger.ms`): longer batches more under load, shorter answers sooner.
    pub linger: std::time::Duration,
}

impl KafkaConfig {
    /// Environment variable that overrides the bootstrap servers.
    pub const BROKERS_ENV: &'static str = "SLUICE_KAFKA_BROKERS";
    /// Bootstrap servers used when nothing else is configured.
    pub const DEFAULT_BROKERS: &'static str = "127.0.0.1:9092";
    /// Producer linger unless a role's configuration says otherwise.
    pub const DEFAULT_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

    /// Settings for `brokers` under `client_id`, with the default linger.
    pub fn new(brokers: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: client_id.into(),
            linger: Self::DEFAULT_LINGER,
        }
    }

    /// Brokers from `SLUICE_KAFKA_BROKERS`, or the local default.
    pub fn from_env(client_id: &str) -> Self {
        let brokers = std::env::var(Self::BROKERS_ENV)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| Self::DEFAULT_BROKERS.to_owned());
        Self::new(brokers, client_id)
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // Nagle's algorithm held the tail of a produce request until the
            // broker's delayed ACK (40 ms on Linux): 1 % of ingest calls took
            // 45 ms where the median took 4 ms.
            .set("socket.nagle.disable", "true");
        config
    }

    /// Producer settings under which an acknowledged record is durable and
    /// written exactly once per send call: idempotence, `acks=all`, bounded
    /// in-flight requests, zstd compression, and records up to 32 MiB (a
    /// 25 MB message plus its envelope; topics are created to match); the
    /// configured linger.
    pub fn producer(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("compression.type", "zstd")
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("message.timeout.ms", "30000")
            .set("message.max.bytes", "33554432");
        config
    }

    /// Consumer settings for a group whose offsets the caller commits itself,
    /// only after the records below the offset have a durable fate.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", "10000");
        config
    }

    /// Settings for an assign-only reader of single partitions: no group, no
    /// commits; an offset below the log start resumes at the earliest record.
    /// librdkafka wants a `group.id` before it assigns partitions; this one
    /// never subscribes nor commits, so the broker keeps nothing for it.
    pub fn reader(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", format!("{}.reader", self.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // A re-assigned partition's first fetch waits for the previous
            // long poll to end; keep that short (new records end it at once).
            .set("fetch.wait.max.ms", "100")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed");
        config
    }

    /// Settings for admin and metadata clients.
    pub fn admin(&self) -> ClientConfig {
        self.base()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> KafkaConfig {
        KafkaConfig::new("b1:9092,b2:9092", "t")
    }

    #[test]
    fn producer_is_idempotent_and_waits_for_all_replicas() {
        let p = cfg().producer();
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("compression.type"), Some("zstd"));
        assert_eq!(p.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
        assert_eq!(p.get("linger.ms"), Some("5"));
        assert_eq!(p.get("socket.nagle.disable"), Some("true"));
    }

    #[test]
    fn consumer_never_commits_on_its_own() {
        let c = cfg().consumer("g");
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.id"), Some("g"));
    }
}
