//! `sluice dev` configuration: one TOML file whose `[ingest]`, `[sender]`
//! and `[recorder]` tables are those services' own configurations, plus
//! `data_dir` and `[control]`. Built-in defaults (defaults.toml) make every
//! field optional; a file overrides them key by key. Unknown keys are
//! rejected, at the top level here and inside each service's table by the
//! service's own parser.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use toml::{Table, Value};

/// The built-in defaults.
const DEFAULTS: &str = include_str!("defaults.toml");

/// Keys allowed at the top level.
const TOP_LEVEL: [&str; 5] = ["data_dir", "control", "ingest", "sender", "recorder"];

/// Everything `sluice dev` runs with.
#[derive(Debug, Clone)]
pub struct DevConfig {
    pub data_dir: PathBuf,
    pub control_listen: String,
    pub ingest: sluice_ingest::IngestConfig,
    pub sender: sluice_sender::SenderConfig,
    pub recorder: sluice_recorder::RecorderConfig,
    /// True when no `ingest.unsubscribe.secret` was given: the node keeps a
    /// generated one in `<data_dir>/unsubscribe.secret` ([`DevConfig::secret`]).
    pub generated_secret: bool,
}

/// Stands in for the generated secret until the data directory is known.
const SECRET_PLACEHOLDER: &str = "replaced-by-the-secret-kept-in-the-data-directory";

impl DevConfig {
    /// The defaults, overridden by `file` when given.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the dev config {}", path.display()))?,
            None => String::new(),
        };
        Self::from_toml(&text)
    }

    /// The defaults, overridden by the TOML `text`.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let mut merged: Table = DEFAULTS.parse().expect("built-in dev defaults parse");
        let overrides: Table = text.parse().context("the dev config is not valid TOML")?;
        for key in overrides.keys() {
            if !TOP_LEVEL.contains(&key.as_str()) {
                bail!(
                    "unknown key `{key}` in the dev config; allowed: {}",
                    TOP_LEVEL.join(", ")
                );
            }
        }
        merge(&mut merged, overrides);
        Self::from_table(merged)
    }

    fn from_table(mut t: Table) -> anyhow::Result<Self> {
        let data_dir = match t.remove("data_dir") {
            Some(Value::String(dir)) => PathBuf::from(dir),
            other => bail!("data_dir: expected a path string, got {other:?}"),
        };
        let control = section(&mut t, "control")?;
        let control_listen = match control.get("listen") {
            Some(Value::String(addr)) if control.len() == 1 => addr.clone(),
            _ => bail!("[control]: expected exactly `listen = \"host:port\"`"),
        };
        let mut ingest = section(&mut t, "ingest")?;
        let generated_secret = set_placeholder(&mut ingest);
        let ingest = toml::to_string(&ingest)?;
        let sender = toml::to_string(&section(&mut t, "sender")?)?;
        let recorder = section(&mut t, "recorder")?;
        Ok(Self {
            data_dir,
            control_listen,
            ingest: sluice_ingest::IngestConfig::from_toml(&ingest)
                .map_err(|e| anyhow::anyhow!("[ingest]: {e}"))?,
            sender: sluice_sender::SenderConfig::from_toml(&sender)
                .map_err(|e| anyhow::anyhow!("[sender]: {e}"))?,
            recorder: Value::Table(recorder)
                .try_into()
                .map_err(|e| anyhow::anyhow!("[recorder]: {e}"))?,
            generated_secret,
        })
    }

    /// Refuses the well-known dev API key on an ingest listener other hosts
    /// can reach: anyone who read the README could send as tenant `dev`.
    pub fn check_exposure(&self) -> anyhow::Result<()> {
        let dev_key = dev_key_hash();
        let well_known = self
            .ingest
            .tenants
            .iter()
            .any(|t| t.api_keys.contains(&dev_key));
        if !well_known {
            return Ok(());
        }
        let l = &self.ingest.listen;
        for (field, addr) in [("grpc", &l.grpc), ("http", &l.http)] {
            let exposed = addr
                .parse::<std::net::SocketAddr>()
                .map_or(true, |a| !a.ip().is_loopback());
            if !addr.trim().is_empty() && exposed {
                bail!(
                    "ingest.listen.{field} = {addr} is reachable from other hosts, and a tenant still \
                     has the well-known dev API key `sluice-dev-key`: give [[ingest.tenants]] your own \
                     api_keys (`printf %s 'new key' | sluice hash-secret`) or listen on 127.0.0.1"
                );
            }
        }
        Ok(())
    }

    /// Puts the data directory's unsubscribe secret in place (creating it on
    /// first start) unless the config named one.
    pub fn secret(&mut self) -> anyhow::Result<()> {
        if !self.generated_secret {
            return Ok(());
        }
        let file = self.data_dir.join("unsubscribe.secret");
        let secret = match std::fs::read_to_string(&file) {
            Ok(secret) => secret.trim().to_owned(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let secret = format!(
                    "{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                );
                std::fs::write(&file, &secret)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                secret
            }
            Err(err) => bail!("cannot read {}: {err}", file.display()),
        };
        self.ingest.unsubscribe.secret = secret;
        Ok(())
    }
}

/// The stored form of `sluice-dev-key` in the built-in defaults.
fn dev_key_hash() -> String {
    let defaults: Table = DEFAULTS.parse().expect("built-in dev defaults parse");
    defaults["ingest"]["tenants"][0]["api_keys"][0]
        .as_str()
        .expect("the defaults hold the dev key")
        .to_owned()
}

/// Sets `unsubscribe.secret` to the placeholder when absent; true if it was.
fn set_placeholder(ingest: &mut Table) -> bool {
    let unsubscribe = ingest
        .entry("unsubscribe")
        .or_insert_with(|| Value::Table(Table::new()));
    match unsubscribe {
        Value::Table(u) if !u.contains_key("secret") => {
            u.insert("secret".into(), SECRET_PLACEHOLDER.into());
            true
        }
        _ => false,
    }
}

/// Removes and returns the table `key` of `t` (empty when absent).
fn section(t: &mut Table, key: &str) -> anyhow::Result<Table> {
    match t.remove(key) {
        None => Ok(Table::new()),
        Some(Value::Table(table)) => Ok(table),
        Some(other) => bail!("`{key}` must be a table, not {}", other.type_str()),
    }
}

/// Merges `over` into `base`: tables merge key by key, anything else
/// (including arrays) replaces the base value.
fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_make_a_working_config() {
        let c = DevConfig::from_toml("").expect("defaults");
        assert_eq!(c.data_dir, PathBuf::from("sluice-data"));
        assert_eq!(c.sender.pool, "default");
        assert_eq!(c.ingest.pools, vec!["default".to_owned()]);
        assert_eq!(c.ingest.tenants[0].name, "dev");
    }

    #[test]
    fn a_file_overrides_single_keys() {
        let c = DevConfig::from_toml(
            "data_dir = \"/tmp/x\"\n[ingest.listen]\ngrpc = \"127.0.0.1:1\"\n",
        )
        .expect("override");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.ingest.listen.grpc, "127.0.0.1:1");
        assert_eq!(c.ingest.listen.http, "127.0.0.1:7080", "siblings stay");
    }

    #[test]
    fn the_example_in_deploy_parses() {
        let c = DevConfig::from_toml(include_str!("../../../../deploy/examples/dev.toml"))
            .expect("deploy/examples/dev.toml");
        assert_eq!(c.sender.source_ips().len(), 2);
        assert_eq!(c.ingest.tenants[0].name, "shop");
        assert!(
            c.generated_secret,
            "no secret in the file: one is generated"
        );
    }

    #[test]
    fn the_dev_key_is_refused_on_a_listener_other_hosts_reach() {
        let c = DevConfig::from_toml("").expect("defaults");
        c.check_exposure().expect("loopback is fine");
        let c = DevConfig::from_toml("[ingest.listen]\nhttp = \"0.0.0.0:7080\"\n").expect("parse");
        let err = c.check_exposure().unwrap_err().to_string();
        assert!(
            err.contains("ingest.listen.http") && err.contains("sluice-dev-key"),
            "{err}"
        );
        let own = include_str!("../../../../deploy/examples/dev.toml")
            .replace("127.0.0.1:7080", "0.0.0.0:7080")
            .replace("sha256$80e0", "sha256$90e0");
        let c = DevConfig::from_toml(&own).expect("parse");
        c.check_exposure()
            .expect("a tenant's own key may be exposed");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = DevConfig::from_toml("datadir = \"x\"").unwrap_err();
        assert!(err.to_string().contains("`datadir`"), "{err}");
        let err = DevConfig::from_toml("[sender]\nnode_name = \"x\"").unwrap_err();
        assert!(format!("{err:#}").contains("node_name"), "{err:#}");
        let err = DevConfig::from_toml("[recorder]\nbatchsize = 1").unwrap_err();
        assert!(format!("{err:#}").contains("batchsize"), "{err:#}");
    }
}
