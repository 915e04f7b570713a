//! `sluice doctor`: checks that the distributed back ends answer and that
//! Sluice's topics are replicated as the cluster allows.

use std::process::ExitCode;
use std::time::Duration;

use sluice_cql::CqlConfig;
use sluice_log::KafkaConfig;

use crate::cli::DoctorArgs;

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout);
    let kafka = KafkaConfig::new(args.kafka.clone(), "sluice-doctor");
    let kafka_ok = match sluice_log::probe(&kafka, timeout).await {
        Ok(brokers) => {
            println!("kafka      ok    {} ({brokers} broker(s))", args.kafka);
            topics(&kafka, &args.topics, timeout).await
        }
        Err(err) => {
            println!("kafka      FAIL  {err}");
            false
        }
    };
    let cql = CqlConfig {
        contact_points: args.cassandra.clone(),
        connect_timeout: timeout,
    };
    let cql_ok = match sluice_cql::connect(&cql).await {
        Ok(_) => {
            println!("cassandra  ok    {}", args.cassandra);
            true
        }
        Err(err) => {
            println!("cassandra  FAIL  {err}");
            false
        }
    };
    Ok(if kafka_ok && cql_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line per topic starting with `prefix`, and what to fix; true when
/// nothing needs fixing.
async fn topics(kafka: &KafkaConfig, prefix: &str, timeout: Duration) -> bool {
    let (brokers, topics) = match sluice_log::topic_health(kafka, prefix, timeout).await {
        Ok(found) => found,
        Err(err) => {
            println!("topics     FAIL  {err}");
            return false;
        }
    };
    let mut healthy = true;
    for topic in &topics {
        let problems = topic.problems(brokers);
        let min = topic
            .min_insync_replicas
            .map_or_else(|| "?".to_owned(), |m| m.to_string());
        let verdict = if problems.is_empty() { "ok  " } else { "WARN" };
        println!(
            "topic      {verdict}  {}  partitions {}  replication {}  min.insync.replicas {min}",
            topic.name, topic.partitions, topic.replication
        );
        for problem in problems {
            println!("                 {problem}");
            healthy = false;
        }
    }
    if topics.is_empty() {
        println!("topics     ok    none named {prefix}* yet (roles create them at start)");
    }
    healthy
}
