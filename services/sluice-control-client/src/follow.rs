//! Following control: the first snapshot, then the Watch stream, for ever.

use std::sync::Arc;
use std::time::Duration;

use sluice_node::CancellationToken;
use sluice_node::tls::TlsConfig;
use sluice_proto::v1::control_client::ControlClient;
use sluice_proto::v1::{GetSnapshotRequest, WatchRequest};
use tokio::sync::watch;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::{ClusterConfig, ControlSection};

/// Time one connection attempt or snapshot call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts, doubled after each failure up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Why a node could not start following control.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The token file could not be read or holds no usable token.
    #[error("control.token_file {path}: {reason}")]
    Token {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An address of `control.addr` cannot be used (scheme, TLS settings).
    #[error("control.addr {addr}: {reason}")]
    Address {
        /// The address.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No address answered with a snapshot in time.
    #[error(
        "no control service at {addrs} gave a snapshot within {timeout:?} (last error: {last}); \
         check control.addr and that `sluice control` runs and is reachable from this node"
    )]
    Unreachable {
        /// The addresses tried.
        addrs: String,
        /// `control.startup_timeout`.
        timeout: Duration,
        /// The last failure.
        last: String,
    },
    /// Control refused this node's credential.
    #[error(
        "control refused this node: {0}; give it a token with the `node` role in control.token_file"
    )]
    Refused(String),
}

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Bearer {
    /// Sends `token` (`None`: no credential).
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        match token {
            None => Ok(Self(None)),
            Some(token) => format!("Bearer {}", token.trim())
                .parse()
                .map(|v| Self(Some(v)))
                .map_err(|_| "the token must be printable ASCII".to_owned()),
        }
    }
}

impl Bearer {
    /// Sends the token kept in `file` (surrounding blanks trimmed); the
    /// error says what is wrong with the file. Clients of the recorder's
    /// Query service read their `token_file` with this too.
    pub fn from_file(file: &std::path::Path) -> Result<Self, String> {
        let token = sluice_node::secret::read_token_file(file)?;
        Self::new(Some(&token))
    }

    /// [`Bearer::from_file`] of `file` when set, else no credential; the
    /// error names `key` (the setting) and the file.
    pub fn from_setting(key: &str, file: Option<&std::path::Path>) -> Result<Self, String> {
        match file {
            None => Ok(Self(None)),
            Some(file) => Self::from_file(file)
                .map_err(|reason| format!("{key} {}: {reason}", file.display())),
        }
    }
}

/// A Control client that sends a bearer credential on every call.
pub type Client = ControlClient<InterceptedService<Channel, Bearer>>;

/// Connects to `addr` (`http://host:port`), sending `token` with every call.
pub async fn client(addr: &str, token: Option<&str>) -> Result<Client, String> {
    client_over(addr, token, &TlsConfig::default()).await
}

/// [`client`] for `https://` addresses too, verified as `tls` says.
pub async fn client_over(
    addr: &str,
    token: Option<&str>,
    tls: &TlsConfig,
) -> Result<Client, String> {
    let caller = Caller {
        bearer: Bearer::new(token)?,
        tls: tls.clone(),
    };
    caller.connect(addr).await
}

/// A client per address of `section`, in order, with the node's token,
/// for calls other than following: each connects on first use and gives a
/// call 5 s. The caller moves to the next client when one is unavailable.
/// Must be made inside a tokio runtime.
pub fn lazy_clients(section: &ControlSection, tls: &TlsConfig) -> Result<Vec<Client>, FollowError> {
    let bearer = bearer(section)?;
    let mut clients = Vec::new();
    for addr in section.addrs() {
        let endpoint =
            sluice_node::tls::endpoint(&addr, tls).map_err(|e| FollowError::Address {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        let channel = endpoint
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        clients.push(ControlClient::with_interceptor(channel, bearer.clone()));
    }
    Ok(clients)
}

/// Loads the first snapshot (waiting up to `control.startup_timeout`), then
/// follows control in a task until `shutdown` is cancelled or every receiver
/// is dropped. The receiver always holds a complete configuration.
pub async fn follow(
    section: &ControlSection,
    tls: &TlsConfig,
    node: &str,
    shutdown: CancellationToken,
) -> Result<watch::Receiver<Arc<ClusterConfig>>, FollowError> {
    let caller = Caller {
        bearer: bearer(section)?,
        tls: tls.clone(),
    };
    let addrs = section.addrs();
    let first = first_snapshot(&addrs, &caller, section.startup_timeout.into()).await?;
    tracing::info!(
        revision = first.revision,
        tenants = first.tenants.len(),
        ips = first.ips.len(),
        "configuration loaded from control"
    );
    let (tx, rx) = watch::channel(Arc::new(first));
    let follower = Follower {
        addrs,
        caller,
        node: node.to_owned(),
        tx,
    };
    let watched = follower.tx.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = watched.closed() => {}
            () = shutdown.cancelled() => {}
            () = follower.run() => {}
        }
    });
    Ok(rx)
}

fn bearer(section: &ControlSection) -> Result<Bearer, FollowError> {
    let Some(path) = &section.token_file else {
        return Ok(Bearer(None));
    };
    Bearer::from_file(path).map_err(|reason| FollowError::Token {
        path: path.display().to_string(),
        reason,
    })
}

/// How this node calls control: its credential and its TLS settings.
struct Caller {
    bearer: Bearer,
    tls: TlsConfig,
}

impl Caller {
    async fn connect(&self, addr: &str) -> Result<Client, String> {
        let endpoint = sluice_node::tls::endpoint(addr, &self.tls)
            .map_err(|e| format!("{addr}: {e}"))?
            .connect_timeout(CALL_TIMEOUT)
            .tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok(ControlClient::with_interceptor(
            channel,
            self.bearer.clone(),
        ))
    }
}

fn refused(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unauthenticated | Code::PermissionDenied
    )
}

async fn first_snapshot(
    addrs: &[String],
    caller: &Caller,
    timeout: Duration,
) -> Result<ClusterConfig, FollowError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("no address in control.addr");
    let mut pause = FIRST_PAUSE;
    loop {
        for addr in addrs {
            match snapshot(addr, caller).await {
                Ok(config) => return Ok(config),
                Err(Err(status)) => return Err(FollowError::Refused(status.message().to_owned())),
                Err(Ok(reason)) => {
                    tracing::warn!(%addr, %reason, "control not ready; trying again");
                    last = reason;
                }
            }
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(FollowError::Unreachable {
                addrs: addrs.join(","),
                timeout,
                last,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// A snapshot from `addr`; `Err(Err(_))` when control refused the credential.
async fn snapshot(addr: &str, caller: &Caller) -> Result<ClusterConfig, Result<String, Status>> {
    let call = async {
        let mut client = caller.connect(addr).await.map_err(Ok)?;
        match client.get_snapshot(GetSnapshotRequest {}).await {
            Ok(response) => Ok(ClusterConfig::from_snapshot(response.into_inner())),
            Err(status) if refused(&status) => Err(Err(status)),
            Err(status) => Err(Ok(format!("{addr}: {}", status.message()))),
        }
    };
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(Ok(format!("{addr}: no snapshot within {CALL_TIMEOUT:?}"))),
    }
}

struct Follower {
    addrs: Vec<String>,
    caller: Caller,
    node: String,
    tx: watch::Sender<Arc<ClusterConfig>>,
}

impl Follower {
    /// Watches each address in turn; a broken stream moves to the next one
    /// and resumes after the last revision applied.
    async fn run(self) {
        let mut config = (**self.tx.borrow()).clone();
        let mut pause = FIRST_PAUSE;
        for addr in self.addrs.iter().cycle() {
            match self.stream(addr, &mut config).await {
                Ok(applied) if applied > 0 => pause = FIRST_PAUSE,
                Ok(_) => {}
                Err(reason) => tracing::warn!(
                    %addr, %reason, revision = config.revision,
                    "lost the control Watch stream; reconnecting (the configuration in use stays as it is)"
                ),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Applies changes from `addr` until the stream ends; returns how many.
    async fn stream(&self, addr: &str, config: &mut ClusterConfig) -> Result<u64, String> {
        let mut client = self.caller.connect(addr).await?;
        let request = WatchRequest {
            node: self.node.clone(),
            after_revision: config.revision,
        };
        let mut stream = client
            .watch(request)
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner();
        let mut applied = 0;
        while let Some(change) = stream.message().await.map_err(|s| s.message().to_owned())? {
            applied += 1;
            if config.apply(&change) {
                tracing::debug!(revision = change.revision, "configuration change applied");
                self.tx.send_replace(Arc::new(config.clone()));
            }
        }
        Ok(applied)
    }
}
