use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::CqlError;

/// Where the ScyllaDB (or Cassandra) cluster is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlConfig {
    /// Contact points, comma separated `host:port` pairs.
    pub contact_points: String,
    /// How long to keep trying to reach a contact point.
    pub connect_timeout: Duration,
}

impl CqlConfig {
    /// Environment variable that overrides the contact points.
    pub const CONTACT_POINTS_ENV: &'static str = "SLUICE_CASSANDRA";
    /// Contact points used when nothing else is configured.
    pub const DEFAULT_CONTACT_POINTS: &'static str = "127.0.0.1:9042";

    /// Contact points from `SLUICE_CASSANDRA`, or the local default.
    pub fn from_env() -> Self {
        let contact_points = std::env::var(Self::CONTACT_POINTS_ENV)
            .ok()
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| Self::DEFAULT_CONTACT_POINTS.to_owned());
        Self {
            contact_points,
            connect_timeout: Duration::from_secs(10),
        }
    }

    fn nodes(&self) -> impl Iterator<Item = &str> {
        self.contact_points
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
    }
}

/// Opens a session, failing with [`CqlError::Unreachable`] when no contact
/// point answers.
pub async fn connect(config: &CqlConfig) -> Result<Session, CqlError> {
    let builder = SessionBuilder::new()
        .known_nodes(config.nodes())
        .connection_timeout(config.connect_timeout);
    builder
        .build()
        .await
        .map_err(|source| CqlError::Unreachable {
            contact_points: config.contact_points.clone(),
            timeout: config.connect_timeout,
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_points_are_split_and_trimmed() {
        let config = CqlConfig {
            contact_points: " a:9042, b:9042 ,".into(),
            connect_timeout: Duration::from_secs(1),
        };
        assert_eq!(config.nodes().collect::<Vec<_>>(), ["a:9042", "b:9042"]);
    }
}
