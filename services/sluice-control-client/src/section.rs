//! The `[control]` section every node that follows control shares.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sluice_node::Span;

/// Where a node finds the control service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// Control service addresses, comma separated (`http://10.0.0.5:7090,
    /// http://10.0.0.6:7090`); the node uses the first that answers and
    /// moves to the next when a stream breaks. Empty: the node takes its
    /// configuration from its own file.
    pub addr: String,
    /// File holding this node's control token (a credential with at least
    /// the `node` role), sent as `authorization: Bearer`. Unset: no token.
    pub token_file: Option<PathBuf>,
    /// How long the node waits at start for its first snapshot before it
    /// gives up.
    pub startup_timeout: Span,
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            addr: String::new(),
            token_file: None,
            startup_timeout: Span::secs(30),
        }
    }
}

impl ControlSection {
    /// True when the node follows control.
    pub fn enabled(&self) -> bool {
        !self.addr.trim().is_empty()
    }

    /// The addresses, each with a scheme (`http://` added when missing).
    pub fn addrs(&self) -> Vec<String> {
        self.addr
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                if a.contains("://") {
                    a.to_owned()
                } else {
                    format!("http://{a}")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme_and_blanks_are_dropped() {
        let section = ControlSection {
            addr: " 10.0.0.5:7090, ,https://c2:7090".into(),
            ..ControlSection::default()
        };
        assert!(section.enabled());
        assert_eq!(section.addrs(), ["http://10.0.0.5:7090", "https://c2:7090"]);
        assert!(!ControlSection::default().enabled());
    }
}
