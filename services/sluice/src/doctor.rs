//! `sluice doctor`: checks that the distributed back ends answer.

use std::process::ExitCode;
use std::time::Duration;

use sluice_cql::CqlConfig;
use sluice_log::KafkaConfig;

use crate::cli::DoctorArgs;

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout);
    let kafka = KafkaConfig {
        brokers: args.kafka.clone(),
        client_id: "sluice-doctor".into(),
    };
    let kafka_ok = match sluice_log::probe(&kafka, timeout).await {
        Ok(brokers) => {
            println!("kafka      ok    {} ({brokers} broker(s))", args.kafka);
            true
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
