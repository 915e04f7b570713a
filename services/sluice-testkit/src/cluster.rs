//! Real `sluice` processes for cluster tests: control replicas on
//! Cassandra, ingest nodes and senders that follow them, and the admin
//! client an operator would use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A loopback address nobody listens on right now (the OS picked the port;
/// a process started right after binds it).
pub fn free_addr() -> SocketAddr {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    socket.local_addr().expect("local addr")
}

/// Starts `binary <role> --config <config>` with `env` added; its log goes
/// to the test's stderr at `log` level.
pub fn spawn_role(
    binary: &str,
    role: &str,
    config: &Path,
    env: &[(&str, &str)],
    log: &str,
) -> Child {
    // `SLUICE_TEST_CHILD_LOG` overrides the test's filter, to look closer
    // at a failing run.
    let log = std::env::var("SLUICE_TEST_CHILD_LOG").unwrap_or_else(|_| log.to_owned());
    let mut command = Command::new(binary);
    command
        .args([role, "--config"])
        .arg(config)
        .env("SLUICE_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("start `sluice {role}`: {e}"))
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_listening(addr: SocketAddr, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Tokens of a test cluster and the files nodes read them from.
pub struct Tokens {
    pub admin: String,
    pub node: String,
    pub node_file: PathBuf,
}

impl Tokens {
    /// Fresh random tokens; the node token is written to a file in `dir`.
    pub fn new(dir: &Path) -> Self {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        let tokens = Self {
            admin: random(),
            node: random(),
            node_file: dir.join("node.token"),
        };
        std::fs::write(&tokens.node_file, &tokens.node).expect("write node token");
        tokens
    }
}

/// A control replica's file: the CQL store in `keyspace`, an admin and a
/// node credential.
pub fn control_toml(listen: SocketAddr, keyspace: &str, tokens: &Tokens) -> String {
    let contact = sluice_cql::CqlConfig::from_env().contact_points;
    let admin = sluice_node::secret::hash_secret(&tokens.admin);
    let node = sluice_node::secret::hash_secret(&tokens.node);
    format!(
        "listen = \"{listen}\"\nstore = \"cassandra\"\ncassandra = \"{contact}\"\nkeyspace = \"{keyspace}\"\n\
         drain_timeout = \"2s\"\n\n[[credentials]]\nname = \"test-admin\"\nrole = \"admin\"\ntoken_hash = \"{admin}\"\n\n\
         [[credentials]]\nname = \"test-nodes\"\nrole = \"node\"\ntoken_hash = \"{node}\"\n"
    )
}

/// The `[control]` section of a node following `controls`.
pub fn follow_toml(controls: &[SocketAddr], tokens: &Tokens) -> String {
    let addrs: Vec<String> = controls.iter().map(|a| format!("http://{a}")).collect();
    format!(
        "[control]\naddr = \"{}\"\ntoken_file = \"{}\"\nstartup_timeout = \"60s\"\n",
        addrs.join(","),
        tokens.node_file.display()
    )
}

/// An admin client of the control replica at `addr`.
pub async fn admin(addr: SocketAddr, tokens: &Tokens) -> sluice_control_client::Client {
    sluice_control_client::client(&format!("http://{addr}"), Some(&tokens.admin))
        .await
        .unwrap_or_else(|e| panic!("connect to control at {addr}: {e}"))
}

/// The API key of tenant `acme` in [`tenant`].
pub const API_KEY: &str = "cluster-test-api-key";

/// Writes `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// A control node on `keyspace` admitting `tokens`, started from
/// `binary` with its file in `dir`; returns once it listens.
pub async fn start_control(
    binary: &str,
    dir: &Path,
    keyspace: &str,
    tokens: &Tokens,
) -> (SocketAddr, Child) {
    let control = free_addr();
    let path = write(
        dir,
        "control.toml",
        &control_toml(control, keyspace, tokens),
    );
    let node = spawn_role(binary, "control", &path, &[], "warn");
    wait_listening(control, "sluice control", Duration::from_secs(60)).await;
    (control, node)
}

/// An ingest node's file: gRPC only on `grpc`, publishing to the topics of
/// `names` (`<prefix><pool>`), following control as `follow` says; `extra`
/// is appended.
pub fn ingest_toml(
    grpc: SocketAddr,
    brokers: &str,
    names: &crate::sender::Names,
    follow: &str,
    extra: &str,
) -> String {
    let prefix = names
        .outbound
        .strip_suffix(&names.pool)
        .expect("the outbound topic ends with the pool's name");
    format!(
        "pools = []\n\n[listen]\ngrpc = \"{grpc}\"\nhttp = \"\"\nsmtp_submission = \"\"\nsmtp_implicit_tls = \"\"\n\n\
         [kafka]\nbrokers = \"{brokers}\"\noutbound_topic_prefix = \"{prefix}\"\nevents_topic = \"{events}\"\n\n\
         [unsubscribe]\nbase_url = \"https://u.sluice.test/u\"\nsecret = \"cluster-test-secret-cluster-test-secret\"\n\n{follow}\n{extra}",
        events = names.events,
    )
}

/// Names whose outbound topic is `<prefix><pool>`, as ingest publishes it.
pub fn cluster_names() -> crate::sender::Names {
    let mut names = crate::sender::Names::new();
    let id = uuid::Uuid::new_v4().simple().to_string();
    names.outbound = format!("sluice.test.cluster.{}.{}", &id[..8], names.pool);
    names
}

/// The site policy of site `gmail`: `per_minute` per IP, 2 connections.
pub fn gmail_policy(per_minute: u32) -> sluice_proto::v1::SitePolicy {
    sluice_proto::v1::SitePolicy {
        site: "gmail".into(),
        messages_per_minute: per_minute,
        max_connections: 2,
        ..Default::default()
    }
}

/// Tenant `acme`: sends from `origin.test` through `pool` with [`API_KEY`].
pub fn tenant(pool: &str, paused: bool) -> sluice_proto::v1::Tenant {
    sluice_proto::v1::Tenant {
        name: "acme".into(),
        sending_domains: vec!["origin.test".into()],
        default_pool: pool.into(),
        api_key_hashes: vec![sluice_node::secret::hash_secret(API_KEY)],
        paused,
        ..Default::default()
    }
}

/// Puts pool `pool` with `ips` of [`crate::sender::IPS`], the gmail policy at
/// `per_minute` and tenant `acme` into control.
pub async fn configure(
    control: SocketAddr,
    tokens: &Tokens,
    pool: &str,
    ips: usize,
    per_minute: u32,
) {
    let mut c = admin(control, tokens).await;
    let record = sluice_proto::v1::Pool {
        name: pool.into(),
        description: "cluster test".into(),
    };
    c.put_pool(record).await.expect("put pool");
    for ip in &crate::sender::IPS[..ips] {
        let ip = sluice_proto::v1::SourceIp {
            address: (*ip).into(),
            pool: pool.into(),
            ehlo_name: "mta.sluice.test".into(),
            ..Default::default()
        };
        c.put_ip(ip).await.expect("put ip");
    }
    c.put_site_policy(gmail_policy(per_minute))
        .await
        .expect("put policy");
    c.put_tenant(tenant(pool, false)).await.expect("put tenant");
}

/// A `Send` of one templated message to `user<n>@gmail.test` from tenant
/// `acme`, with [`API_KEY`].
pub fn numbered_send(n: usize) -> tonic::Request<sluice_proto::v1::SendRequest> {
    use sluice_proto::v1::{Recipient, SendRequest, Template, send_request::Content};
    let mut request = tonic::Request::new(SendRequest {
        from: "news@origin.test".into(),
        recipients: vec![Recipient {
            address: format!("user{n}@gmail.test"),
            ..Recipient::default()
        }],
        content: Some(Content::Template(Template {
            subject: format!("cluster test {n}"),
            text: "hello".into(),
            html: String::new(),
        })),
        ..SendRequest::default()
    });
    let auth = format!("Bearer {API_KEY}").parse().expect("header");
    request.metadata_mut().insert("authorization", auth);
    request
}

/// A recorder's file: Cassandra ledger in `keyspace`, the events topic of
/// `names`, Query on `query` with the admin token of `tokens`.
pub fn recorder_toml(
    query: SocketAddr,
    brokers: &str,
    keyspace: &str,
    names: &crate::sender::Names,
    tokens: &Tokens,
) -> String {
    let contact = sluice_cql::CqlConfig::from_env().contact_points;
    let admin = sluice_node::secret::hash_secret(&tokens.admin);
    format!(
        "brokers = \"{brokers}\"\nledger = \"cassandra\"\ncassandra = \"{contact}\"\nkeyspace = \"{keyspace}\"\n\
         topic = \"{events}\"\ngroup = \"{group}-recorder\"\nquery_listen = \"{query}\"\nbatch_max_wait = \"200ms\"\n\
         drain_timeout = \"2s\"\n\n[[credentials]]\nname = \"test-admin\"\nrole = \"admin\"\ntoken_hash = \"{admin}\"\n",
        events = names.events,
        group = names.group,
    )
}

/// A sender's file that takes its IPs, limits and tenants from control
/// (`follow`), routing the simulator's gmail domain to it.
pub fn follower_sender_toml(
    names: &crate::sender::Names,
    sim: &sluice_sim::SimHandle,
    brokers: &str,
    follow: &str,
) -> String {
    let domains: Vec<(&str, &[&str])> = vec![("gmail", &["gmail.test"])];
    format!(
        "{}\n{}\n{}\n[shaping.limits.default]\nburst = 5\nmax_connections = 2\n\n{follow}",
        crate::sender::base_config(names, brokers),
        crate::sender::routes_toml(sim, &domains),
        crate::sender::site_rules_toml(sim),
    )
}

/// [`follower_sender_toml`] plus leases on Cassandra in `keyspace` (3 s
/// TTL, renewed every second): a sender that shares its pool's IPs with
/// others.
pub fn leased_sender_toml(
    names: &crate::sender::Names,
    sim: &sluice_sim::SimHandle,
    brokers: &str,
    keyspace: &str,
    follow: &str,
) -> String {
    format!(
        "{}\n{}",
        follower_sender_toml(names, sim, brokers, follow),
        crate::leases::leases_toml(keyspace, "3s", "1s", "1s"),
    )
}
