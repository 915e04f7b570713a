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
