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

    /// Log format on stderr: `text` for people, `json` (one object per
    /// line, with the span fields, for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Export traces over OTLP/gRPC to this collector, e.g.
    /// http://otel-collector:4317. Without it no spans are made or sent.
    /// Service roles only (ingest, sender, recorder, control, dev).
    #[arg(long, global = true, value_name = "URL", env = "SLUICE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Share of new traces exported, 0.0 to 1.0. Later stages follow the
    /// first stage's decision; a tenant or message marked `trace` is always
    /// exported (docs/observability.md#traces).
    #[arg(
        long,
        global = true,
        value_name = "RATIO",
        default_value_t = 0.01,
        env = "SLUICE_TRACE_SAMPLE"
    )]
    pub trace_sample: f64,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Options shared by every service role.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Node configuration file (TOML); without it, the built-in defaults.
    /// Every key can be overridden by an environment variable
    /// SLUICE_<ROLE>_<KEY>, nested keys joined by `__` (e.g.
    /// SLUICE_SENDER_SMTP__PORT=2525); see docs/configuration.md.
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
    /// Run an inbound node: the MX for the VERP addresses mail is sent from,
    /// turning bounce reports (DSNs) into events (docs/feedback.md).
    Inbound(ServiceArgs),
    /// Run a webhook dispatcher: post each tenant's events to the webhooks
    /// it registered in control, signed, retried for a day
    /// (docs/webhooks.md).
    #[command(after_help = "Example:\n  sluice webhooks --config webhooks.toml")]
    Webhooks(ServiceArgs),
    /// Run ingest, sender, recorder and control in one process on the embedded
    /// store in a data directory: no Kafka, no ScyllaDB, no config file needed.
    ///
    /// Prints where each service listens. Send mail with the API key
    /// `sluice-dev-key` (see the README's quick start). Stop with Ctrl-C; mail
    /// already accepted stays in the data directory and goes out at the next start.
    #[command(
        after_help = "Examples:\n  sluice dev\n  sluice dev --data-dir /var/lib/sluice\n  sluice dev --config deploy/examples/dev.toml"
    )]
    Dev(DevArgs),
    /// Run `sluice dev` plus a simulated ISP farm, send test mail, and report.
    Demo(DemoArgs),
    /// Apply the versioned CQL schema to keyspace `sluice` (idempotent).
    Migrate(ServiceArgs),
    /// Check that the Kafka brokers and ScyllaDB/Cassandra nodes answer, and
    /// that Sluice's topics are replicated and partitioned for the cluster
    /// (exit 1 naming what to fix).
    Doctor(DoctorArgs),
    /// Hash a secret for the ingest config: reads it from standard input (one
    /// line) and prints the stored form. API keys get a salted SHA-256 entry;
    /// with --password, an SMTP password gets an Argon2id PHC string.
    ///
    /// Example: `printf %s 'the password' | sluice hash-secret --password`
    HashSecret(HashSecretArgs),
    /// Manage pools, source IPs, warm-up plans, tenants and suppressions
    /// through the control service.
    Admin(AdminArgs),
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
    /// Run in this directory (new or empty) and keep it afterwards, instead of
    /// a fresh directory under the system temp directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the temporary data directory (the log, ledger and sender state)
    /// after the run and print its path.
    #[arg(long)]
    pub keep: bool,
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
    /// Token sent as `authorization: Bearer <token>`: a credential of the
    /// recorder (`sluice dev`: the admin token in `<data_dir>/control.token`),
    /// or a tenant's API key, which reads that tenant's own messages and
    /// stats.
    #[arg(long, env = "SLUICE_QUERY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

impl QueryArgs {
    /// The Query service these arguments name.
    pub fn remote(&self) -> crate::query_cli::Remote<'_> {
        crate::query_cli::Remote {
            addr: &self.query_addr,
            token: self.token.as_deref(),
            tls: self.tls.config(),
        }
    }
}

/// TLS for `https://` service addresses (docs/security.md).
#[derive(Debug, Args)]
pub struct ClientTlsArgs {
    /// PEM CA certificates that signed the service's certificate (default:
    /// the webpki roots).
    #[arg(long, global = true, env = "SLUICE_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate, for services that require mutual TLS.
    #[arg(
        long,
        global = true,
        env = "SLUICE_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<std::path::PathBuf>,
    /// PEM private key of `--client-cert`.
    #[arg(
        long,
        global = true,
        env = "SLUICE_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<std::path::PathBuf>,
}

impl ClientTlsArgs {
    /// The TLS settings these arguments give.
    pub fn config(&self) -> sluice_node::tls::TlsConfig {
        sluice_node::tls::TlsConfig {
            ca_file: self.ca_file.clone(),
            cert_file: self.client_cert.clone(),
            key_file: self.client_key.clone(),
            ..Default::default()
        }
    }
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
    /// Check the partitions and replication of the topics whose names start
    /// with this prefix.
    #[arg(long, default_value = "sluice.")]
    pub topics: String,
}

/// `sluice dev` options.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Dev configuration (TOML): `data_dir`, `[control]`, and the `[ingest]`,
    /// `[sender]` and `[recorder]` service tables; every key is optional
    /// (docs/dev.md lists the defaults).
    #[arg(short, long, value_name = "FILE", env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides `data_dir` of the config).
    #[arg(long, value_name = "DIR", env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `sluice admin` options.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  export SLUICE_CONTROL_TOKEN=$(cat sluice-data/control.token)   # the token sluice dev made\n  \
                  sluice admin pools\n  sluice admin ip put 192.0.2.10 --pool default --warmup standard\n  \
                  sluice admin --json suppressions dev\n  sluice admin delete ip 192.0.2.10"
)]
pub struct AdminArgs {
    /// Control service address (`host:port` or URL).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:7090",
        env = "SLUICE_CONTROL"
    )]
    pub endpoint: String,
    /// Control token, sent as `authorization: Bearer <token>` on every call
    /// (a credential of control's configuration; `sluice dev` keeps its admin
    /// token in `<data_dir>/control.token`).
    #[arg(
        long,
        global = true,
        env = "SLUICE_CONTROL_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    #[command(subcommand)]
    pub command: crate::admin::AdminCommand,
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
