/// Why a sender node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error(transparent)]
    Config(#[from] sluice_node::ConfigError),
    #[error("{0}")]
    Listen(std::io::Error),
    #[error("shaping configuration: {0}")]
    Shaping(sluice_shaping::ConfigError),
    #[error("control: {0}")]
    Control(#[from] sluice_control_client::FollowError),
    #[error("message log: {0}")]
    Log(#[from] sluice_log::LogError),
    #[error(transparent)]
    Route(#[from] crate::route::RouteError),
    #[error("shaping state file {file}: {reason}")]
    State { file: String, reason: String },
    #[error("IP leases: {0}")]
    Leases(String),
    #[error(transparent)]
    Cql(#[from] sluice_cql::CqlError),
    #[error("internal error: {0}")]
    Internal(String),
}
