//! Command-line interface of the `sluice` binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Sluice: a distributed, high-throughput email sending cluster.
///
/// Ingest nodes accept mail over gRPC, HTTP and SMTP submission and publish one
/// record per recipient to Kafka. Sender nodes deliver it over SMTP from their
/// source IPs within every ISP's limits and each IP's warm-up plan. A recorder
/// writes every outcome to ScyllaDB; a control service holds the configuration.
///
/// New here? `sluice demo` runs the whole cluster and a simulated ISP farm in one
/// process. `sluice doctor` checks that Kafka and ScyllaDB/Cassandra answer.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). SLUICE_LOG overrides, e.g. SLUICE_LOG=sluice=debug.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every service role.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Node configuration file (TOML). Every value can be overridden by an
    /// environment variable; see docs/configuration.md.
    #[arg(short, long, value_name = "FILE", env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an ingest node: gRPC, HTTP JSON and SMTP submission into Kafka.
    Ingest(ServiceArgs),
    /// Run a sender node: consume a pool's topics and deliver over SMTP.
    Sender(ServiceArgs),
    /// Run the recorder: write every event to ScyllaDB and compute reputation.
    Recorder(ServiceArgs),
    /// Run the control service: configuration over gRPC with a watch stream.
    Control(ServiceArgs),
    /// Run every role in one process on the embedded store (no Kafka, no ScyllaDB).
    Dev(ServiceArgs),
    /// Run `sluice dev` plus a simulated ISP farm, send test mail, and report.
    Demo(DemoArgs),
    /// Apply the versioned CQL schema to keyspace `sluice` (idempotent).
    Migrate(ServiceArgs),
    /// Check that the configured Kafka brokers and ScyllaDB/Cassandra nodes answer.
    Doctor(DoctorArgs),
    /// Hash a secret for the ingest config: reads it from standard input (one
    /// line) and prints the stored form. API keys get a salted SHA-256 entry;
    /// with --password, an SMTP password gets an Argon2id PHC string.
    ///
    /// Example: `printf %s 'the password' | sluice hash-secret --password`
    HashSecret(HashSecretArgs),
    /// Manage pools, source IPs, warm-up plans, site policies and tenants.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Show a message's status and history by id.
    Status(MessageArgs),
    /// Show delivery stats by campaign, tenant, IP, site and day.
    Stats(StatsArgs),
    /// Show the reputation table per (source IP, site).
    Reputation(ReputationArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many messages the demo submits.
    #[arg(long, default_value_t = 50_000)]
    pub messages: u64,
}

#[derive(Debug, Args)]
pub struct MessageArgs {
    /// Message id as returned by ingest.
    pub message_id: String,
    #[command(flatten)]
    pub query: QueryArgs,
}

/// Where the recorder's Query service is and how to print its answer.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Address of the Query gRPC service (a recorder's `query_listen`).
    #[arg(
        long,
        env = "SLUICE_QUERY_ADDR",
        default_value = "http://127.0.0.1:7402"
    )]
    pub query_addr: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// What to group by.
    #[arg(long, value_parser = ["campaign", "tenant", "ip", "site"])]
    pub by: String,
    /// Campaign id, tenant name, source IP or site.
    #[arg(long)]
    pub key: String,
    /// First UTC day, YYYY-MM-DD (default today).
    #[arg(long)]
    pub from: Option<String>,
    /// Last UTC day, YYYY-MM-DD, inclusive (default: --from).
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub query: QueryArgs,
}

#[derive(Debug, Args)]
pub struct ReputationArgs {
    /// Only this source IP.
    #[arg(long)]
    pub ip: Option<String>,
    /// Only this site.
    #[arg(long)]
    pub site: Option<String>,
    #[command(flatten)]
    pub query: QueryArgs,
}

#[derive(Debug, Args)]
pub struct HashSecretArgs {
    /// The secret is a password a person chose (SMTP AUTH): hash it with Argon2id.
    #[arg(long)]
    pub password: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Kafka bootstrap servers to check.
    #[arg(long, env = "SLUICE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka: String,
    /// ScyllaDB/Cassandra contact points to check.
    #[arg(long, env = "SLUICE_CASSANDRA", default_value = "127.0.0.1:9042")]
    pub cassandra: String,
    /// Seconds to wait for each server.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List or change sending pools.
    Pool,
    /// List or change source IPs and their owners.
    Ip,
    /// List or change warm-up plans.
    Warmup,
    /// List or change site policies (per-ISP limits).
    Site,
    /// List or change tenants and their API keys.
    Tenant,
    /// List, add or remove suppressed addresses.
    Suppression,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn demo_defaults_to_fifty_thousand_messages() {
        let cli = Cli::try_parse_from(["sluice", "demo"]).expect("parses");
        match cli.command {
            Command::Demo(args) => assert_eq!(args.messages, 50_000),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn unknown_subcommand_is_rejected() {
        let err = Cli::try_parse_from(["sluice", "frobnicate"]).expect_err("rejected");
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidSubcommand);
    }
}
