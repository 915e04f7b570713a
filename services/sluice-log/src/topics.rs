//! How topics are created: partitions, replication and `min.insync.replicas`
//! per topic family. A role creates the topics it needs when they are
//! missing (whichever role comes first); topics that exist are left as they
//! are, so an operator may also create them beforehand.

use serde::{Deserialize, Serialize};

/// How one family of topics is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSpec {
    /// Partitions of a new topic: the most consumers of a group that can
    /// share the topic (one partition has one reader at a time).
    pub partitions: i32,
    /// Copies of every record. 0: as many as the cluster has brokers, at
    /// most 3 (the embedded log keeps one copy on disk and ignores this).
    pub replication: i16,
    /// Copies that must have a record before a write with `acks=all` is
    /// acknowledged (`min.insync.replicas`). 0: one less than `replication`,
    /// at least 1.
    pub min_insync_replicas: i16,
}

impl TopicSpec {
    /// `partitions` partitions; replication and `min.insync.replicas` chosen
    /// from the cluster.
    pub const fn with_partitions(partitions: i32) -> Self {
        Self {
            partitions,
            replication: 0,
            min_insync_replicas: 0,
        }
    }

    /// The replication factor on a cluster of `brokers` brokers.
    pub fn replication_on(&self, brokers: usize) -> i16 {
        if self.replication > 0 {
            return self.replication;
        }
        i16::try_from(brokers.clamp(1, 3)).unwrap_or(3)
    }

    /// `min.insync.replicas` for a topic with `replication` copies.
    pub fn min_insync_for(&self, replication: i16) -> i16 {
        if self.min_insync_replicas > 0 {
            return self.min_insync_replicas;
        }
        (replication - 1).max(1)
    }
}

impl Default for TopicSpec {
    fn default() -> Self {
        Self::with_partitions(crate::DEFAULT_PARTITIONS)
    }
}

/// How each family of Sluice's topics is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// `sluice.outbound.<pool>`: one partition per sender node at most, so
    /// this bounds the sender nodes of a pool.
    pub outbound: TopicSpec,
    /// `sluice.outbound.<pool>.delay-<tier>`: deferred and overflowed mail.
    pub delay: TopicSpec,
    /// `sluice.events`: every outcome, read by the recorders.
    pub events: TopicSpec,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            outbound: TopicSpec::with_partitions(48),
            delay: TopicSpec::with_partitions(24),
            events: TopicSpec::with_partitions(24),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_follows_the_cluster_up_to_three() {
        let auto = TopicSpec::with_partitions(6);
        assert_eq!(auto.replication_on(1), 1);
        assert_eq!(auto.replication_on(2), 2);
        assert_eq!(auto.replication_on(3), 3);
        assert_eq!(auto.replication_on(9), 3);
        assert_eq!(auto.replication_on(0), 1, "no metadata: one copy, not zero");
        let fixed = TopicSpec {
            replication: 5,
            ..auto
        };
        assert_eq!(fixed.replication_on(9), 5);
    }

    #[test]
    fn min_insync_leaves_one_copy_of_slack() {
        let auto = TopicSpec::with_partitions(6);
        assert_eq!(auto.min_insync_for(3), 2);
        assert_eq!(auto.min_insync_for(2), 1);
        assert_eq!(auto.min_insync_for(1), 1);
        let fixed = TopicSpec {
            min_insync_replicas: 3,
            ..auto
        };
        assert_eq!(fixed.min_insync_for(3), 3);
    }
}
