//! The one configuration loader of every role.
//!
//! A role's configuration is a serde struct with
//! `#[serde(deny_unknown_fields)]` on every table and a doc comment on every
//! field (that comment is the reference; [`crate::reference`] checks the
//! docs against it). [`load`] layers, lowest first:
//!
//! 1. the role's built-in defaults ([`RoleConfig::DEFAULTS`], TOML; most roles
//!    have none and use serde defaults instead),
//! 2. the TOML file, when one is given (it must exist),
//! 3. environment variables `SLUICE_<ROLE>_<KEY>`, where nested keys are
//!    joined with a double underscore: `SLUICE_SENDER_SMTP__PORT=2525` sets
//!    `smtp.port` of the sender. A variable with the prefix that names no key
//!    is an error, like an unknown key in the file.
//!
//! Durations are written one way everywhere: [`crate::Span`] (`"500ms"`,
//! `"30s"`, `"10m"`, `"6h"`, `"5d"`, or a bare integer of seconds).
//!
//! Errors name the role, where the bad value came from (the file or the
//! environment variable), the key and the reason.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::de::DeserializeOwned;

/// A role's configuration.
pub trait RoleConfig: DeserializeOwned {
    /// The role's name as used in the environment prefix: `ingest` reads
    /// `SLUICE_INGEST_*`.
    const ROLE: &'static str;

    /// Built-in defaults layered below the file (a TOML document), for roles
    /// whose defaults are easier to read as a file than as serde defaults.
    const DEFAULTS: Option<&'static str> = None;

    /// Checks what serde cannot (ranges, cross-field rules). Errors name the
    /// key: build them with [`ConfigError::invalid`].
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The role whose configuration it is.
    pub role: &'static str,
    /// Where the value came from: a file or an environment variable.
    pub origin: Option<Origin>,
    /// The key, dotted (`smtp.port`); empty for the whole document.
    pub key: String,
    /// What is wrong and, where it helps, what to do.
    pub reason: String,
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A TOML file.
    File(PathBuf),
    /// An environment variable (its name).
    Env(String),
    /// The role's built-in defaults, or a TOML text handed over by code.
    Text,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} configuration", self.role)?;
        match &self.origin {
            Some(Origin::File(path)) => write!(f, " (file {})", path.display())?,
            Some(Origin::Env(name)) => write!(f, " (environment variable {name})")?,
            Some(Origin::Text) | None => {}
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.reason)
        } else {
            write!(f, ": `{}`: {}", self.key, self.reason)
        }
    }
}

impl ConfigError {
    /// A value that parsed but is not acceptable (from [`RoleConfig::validate`]).
    pub fn invalid(role: &'static str, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            role,
            origin: None,
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn from_figment(role: &'static str, err: figment::Error) -> Self {
        let mut key = err.path.clone();
        let reason = match &err.kind {
            figment::error::Kind::UnknownField(field, expected) => {
                push_once(&mut key, field);
                format!("unknown key; the keys here are {}", one_of(expected))
            }
            figment::error::Kind::MissingField(field) => {
                push_once(&mut key, field);
                "missing; this key is required".to_owned()
            }
            kind => kind.to_string(),
        };
        let origin = err.metadata.as_ref().map(|meta| match &meta.source {
            Some(figment::Source::File(path)) => Origin::File(path.clone()),
            _ if meta.name.contains("environment") => Origin::Env(format!(
                "{}{}",
                env_prefix(role),
                key.join("__").to_ascii_uppercase()
            )),
            _ => Origin::Text,
        });
        Self {
            role,
            origin,
            key: key.join("."),
            reason,
        }
    }
}

/// Appends `field` unless the path already ends with it (figment's paths
/// sometimes include the offending field, sometimes not).
fn push_once(path: &mut Vec<String>, field: &str) {
    if path.last().map(String::as_str) != Some(field) {
        path.push(field.to_owned());
    }
}

fn one_of(expected: &[&str]) -> String {
    let names: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
    names.join(", ")
}

/// The environment prefix of `role`: `SLUICE_INGEST_` for `ingest`.
pub fn env_prefix(role: &str) -> String {
    format!("SLUICE_{}_", role.to_ascii_uppercase())
}

/// Loads a role's configuration: built-in defaults, then `file` (when
/// given), then `SLUICE_<ROLE>_*` variables; then validates it.
pub fn load<C: RoleConfig>(file: Option<&Path>) -> Result<C, ConfigError> {
    let mut figment = base::<C>();
    if let Some(file) = file {
        if !file.is_file() {
            return Err(ConfigError {
                role: C::ROLE,
                origin: Some(Origin::File(file.to_owned())),
                key: String::new(),
                reason: "the file does not exist or is not a regular file".into(),
            });
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    let prefix = env_prefix(C::ROLE);
    figment = figment.merge(Env::prefixed(&prefix).split("__"));
    extract(figment)
}

/// Parses a role's configuration from TOML `text` over its built-in
/// defaults, without environment overrides (tests and composed configs).
pub fn from_toml<C: RoleConfig>(text: &str) -> Result<C, ConfigError> {
    extract(base::<C>().merge(Toml::string(text)))
}

fn base<C: RoleConfig>() -> Figment {
    match C::DEFAULTS {
        Some(defaults) => Figment::from(Toml::string(defaults)),
        None => Figment::new(),
    }
}

fn extract<C: RoleConfig>(figment: Figment) -> Result<C, ConfigError> {
    let config: C = figment
        .extract()
        .map_err(|err| ConfigError::from_figment(C::ROLE, err))?;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests;
