//! How the topics of a cluster are replicated and partitioned, for
//! `sluice doctor`.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{KafkaConfig, LogError};

/// One topic as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicHealth {
    pub name: String,
    pub partitions: usize,
    /// The fewest replicas any partition has.
    pub replication: usize,
    /// Partitions whose in-sync replicas are fewer than their replicas.
    pub under_replicated: usize,
    /// `min.insync.replicas` of the topic, when the cluster said.
    pub min_insync_replicas: Option<usize>,
}

impl TopicHealth {
    /// What an operator should fix, given `brokers` brokers; empty when
    /// nothing.
    pub fn problems(&self, brokers: usize) -> Vec<String> {
        let mut problems = Vec::new();
        let wanted = brokers.clamp(1, 3);
        if self.replication < wanted {
            problems.push(format!(
                "replication {} on a cluster of {brokers} broker(s): a broker loss can lose \
                 acknowledged records; recreate it with {wanted} copies",
                self.replication
            ));
        }
        if self.under_replicated > 0 {
            problems.push(format!(
                "{} partition(s) under-replicated (in-sync replicas fewer than replicas): a broker \
                 is down or behind",
                self.under_replicated
            ));
        }
        if let Some(min) = self.min_insync_replicas {
            if min > self.replication {
                problems.push(format!(
                    "min.insync.replicas {min} > replication {}: every write with acks=all fails",
                    self.replication
                ));
            } else if self.replication > 1 && min == self.replication {
                problems.push(format!(
                    "min.insync.replicas {min} = replication: one broker down stops writes; use {}",
                    self.replication - 1
                ));
            }
        }
        problems
    }
}

/// The brokers of the cluster and every topic whose name starts with
/// `prefix`, sorted by name.
pub async fn topic_health(
    config: &KafkaConfig,
    prefix: &str,
    timeout: Duration,
) -> Result<(usize, Vec<TopicHealth>), LogError> {
    let (brokers, mut topics) = metadata(config, prefix, timeout).await?;
    let admin: AdminClient<DefaultClientContext> =
        config.admin().create().map_err(config.fail(None))?;
    let specifiers: Vec<ResourceSpecifier> = topics
        .iter()
        .map(|t| ResourceSpecifier::Topic(t.name.as_str()))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(timeout));
    if !specifiers.is_empty() {
        let described = admin
            .describe_configs(specifiers.iter(), &options)
            .await
            .map_err(config.fail(None))?;
        for (topic, resource) in topics.iter_mut().zip(described) {
            topic.min_insync_replicas = resource
                .ok()
                .and_then(|r| r.get("min.insync.replicas").and_then(|e| e.value.clone()))
                .and_then(|v| v.parse().ok());
        }
    }
    Ok((brokers, topics))
}

async fn metadata(
    config: &KafkaConfig,
    prefix: &str,
    timeout: Duration,
) -> Result<(usize, Vec<TopicHealth>), LogError> {
    let (config, prefix) = (config.clone(), prefix.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.admin().create().map_err(config.fail(None))?;
        let metadata = consumer
            .fetch_metadata(None, timeout)
            .map_err(config.fail(None))?;
        let mut topics: Vec<TopicHealth> = metadata
            .topics()
            .iter()
            .filter(|t| t.name().starts_with(&prefix))
            .map(|t| TopicHealth {
                name: t.name().to_owned(),
                partitions: t.partitions().len(),
                replication: t
                    .partitions()
                    .iter()
                    .map(|p| p.replicas().len())
                    .min()
                    .unwrap_or(0),
                under_replicated: t
                    .partitions()
                    .iter()
                    .filter(|p| p.isr().len() < p.replicas().len())
                    .count(),
                min_insync_replicas: None,
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((metadata.brokers().len(), topics))
    })
    .await
    .map_err(|err| LogError::Internal(format!("reading the topics' metadata: {err}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(replication: usize, under: usize, min: Option<usize>) -> TopicHealth {
        TopicHealth {
            name: "sluice.events".into(),
            partitions: 24,
            replication,
            under_replicated: under,
            min_insync_replicas: min,
        }
    }

    #[test]
    fn a_well_kept_topic_has_no_problem() {
        assert!(topic(3, 0, Some(2)).problems(3).is_empty());
        assert!(topic(1, 0, Some(1)).problems(1).is_empty());
    }

    #[test]
    fn each_problem_is_named() {
        let p = topic(1, 0, Some(1)).problems(3);
        assert!(p.len() == 1 && p[0].contains("replication 1"), "{p:?}");
        let p = topic(3, 2, Some(2)).problems(3);
        assert!(
            p.len() == 1 && p[0].contains("2 partition(s) under-replicated"),
            "{p:?}"
        );
        let p = topic(3, 0, Some(3)).problems(3);
        assert!(
            p.len() == 1 && p[0].contains("one broker down stops writes"),
            "{p:?}"
        );
        let p = topic(1, 0, Some(2)).problems(1);
        assert!(
            p.len() == 1 && p[0].contains("every write with acks=all fails"),
            "{p:?}"
        );
    }
}
