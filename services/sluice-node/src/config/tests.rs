#![allow(clippy::result_large_err)] // figment::Jail closures return figment::Error
use serde::Deserialize;

use super::*;
use crate::Span;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Demo {
    name: String,
    #[serde(default)]
    smtp: Smtp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Smtp {
    port: u16,
    timeout: Span,
}

impl Default for Smtp {
    fn default() -> Self {
        Self {
            port: 25,
            timeout: Span::secs(30),
        }
    }
}

impl RoleConfig for Demo {
    const ROLE: &'static str = "demo";
    fn validate(&self) -> Result<(), ConfigError> {
        if self.smtp.port == 0 {
            return Err(ConfigError::invalid(
                Self::ROLE,
                "smtp.port",
                "must not be 0",
            ));
        }
        Ok(())
    }
}

#[test]
fn file_then_environment_with_one_prefix_rule() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "demo.toml",
            "name = \"a\"\n[smtp]\nport = 2525\ntimeout = \"5m\"\n",
        )?;
        jail.set_env("SLUICE_DEMO_SMTP__PORT", "2626");
        let config: Demo = load(Some(Path::new("demo.toml"))).expect("loads");
        assert_eq!(config.name, "a");
        assert_eq!(config.smtp.port, 2626, "the environment wins over the file");
        assert_eq!(config.smtp.timeout, Span::mins(5));
        Ok(())
    });
}

#[test]
fn an_unknown_key_names_the_file_the_key_and_the_known_keys() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("demo.toml", "name = \"a\"\n[smtp]\nprot = 1\n")?;
        let err = load::<Demo>(Some(Path::new("demo.toml"))).unwrap_err();
        assert_eq!(err.key, "smtp.prot");
        let text = err.to_string();
        assert!(
            text.contains("demo.toml") && text.contains("`smtp.prot`"),
            "{text}"
        );
        assert!(
            text.contains("`port`") && text.contains("`timeout`"),
            "{text}"
        );
        Ok(())
    });
}

#[test]
fn an_unknown_environment_variable_is_refused_by_name() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SLUICE_DEMO_NAME", "a");
        jail.set_env("SLUICE_DEMO_SMTP__PROT", "1");
        let err = load::<Demo>(None).unwrap_err();
        assert_eq!(err.key, "smtp.prot");
        assert!(err.to_string().contains("SLUICE_DEMO_SMTP__PROT"), "{err}");
        Ok(())
    });
}

#[test]
fn bad_values_missing_keys_and_missing_files_are_named() {
    let err = from_toml::<Demo>("name = \"a\"\n[smtp]\ntimeout = \"5 weeks\"\n").unwrap_err();
    assert_eq!(err.key, "smtp.timeout");
    assert!(err.reason.contains("5 weeks"), "{err}");
    let err = from_toml::<Demo>("").unwrap_err();
    assert_eq!(err.key, "name");
    assert!(err.reason.contains("required"), "{err}");
    let err = from_toml::<Demo>("name = \"a\"\n[smtp]\nport = 0\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "demo configuration: `smtp.port`: must not be 0"
    );
    let err = load::<Demo>(Some(Path::new("/nonexistent/demo.toml"))).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/demo.toml"), "{err}");
}
