//! `sluice dev` configuration: one TOML file whose `[control]`, `[ingest]`,
//! `[sender]` and `[recorder]` tables are those roles' own typed
//! configurations, plus `data_dir`. It is loaded by the one loader
//! (`sluice_node::config`): built-in defaults (defaults.toml), then the
//! file, then `SLUICE_DEV_<KEY>` variables (`SLUICE_DEV_INGEST__LISTEN__HTTP`);
//! unknown keys are rejected at every level by the roles' own types. The
//! back-end keys of the role tables (`control.store`, `recorder.ledger`,
//! brokers, contact points, their data directories) are not used: dev runs
//! every role on the embedded back ends in `data_dir`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use sluice_node::{ConfigError, RoleConfig};

/// The built-in defaults.
const DEFAULTS: &str = include_str!("defaults.toml");

/// Stands in for the generated secret until the data directory is known
/// (the value of `ingest.unsubscribe.secret` in the defaults).
const SECRET_PLACEHOLDER: &str = "replaced-by-the-secret-kept-in-the-data-directory";

/// Everything `sluice dev` runs with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevConfig {
    /// Where the embedded message log, ledger, control store and sender
    /// state live.
    pub data_dir: PathBuf,
    /// The control role (only `listen` and `drain_timeout` are used).
    pub control: sluice_control::ControlConfig,
    /// The ingest role.
    pub ingest: sluice_ingest::IngestConfig,
    /// The sender role.
    pub sender: sluice_sender::SenderConfig,
    /// The recorder role.
    pub recorder: sluice_recorder::RecorderConfig,
    /// The inbound role (its MX; `secret`, `brokers` and `events_topic` are
    /// not used: dev takes ingest's secret and events topic).
    pub inbound: sluice_inbound::InboundConfig,
    /// The webhook dispatcher (`brokers`, `events_topic`, `control` and the
    /// `query_*` keys are not used: dev takes ingest's events topic and its
    /// own control and Query).
    pub webhooks: sluice_webhooks::WebhooksConfig,
}

impl RoleConfig for DevConfig {
    const ROLE: &'static str = "dev";
    const DEFAULTS: Option<&'static str> = Some(DEFAULTS);

    /// Each role's own checks, with the role's table in the key.
    fn validate(&self) -> Result<(), ConfigError> {
        let within = |table: &str, err: ConfigError| ConfigError {
            role: Self::ROLE,
            origin: err.origin,
            key: format!("{table}.{}", err.key),
            reason: err.reason,
        };
        self.control.validate().map_err(|e| within("control", e))?;
        self.ingest.validate().map_err(|e| within("ingest", e))?;
        self.sender.validate().map_err(|e| within("sender", e))?;
        self.recorder
            .validate()
            .map_err(|e| within("recorder", e))?;
        // Its secret and links are ingest's, set at start: checked with those.
        let inbound = self.inbound_config();
        inbound.validate().map_err(|e| within("inbound", e))?;
        // Its control is this process's, set at start.
        let mut webhooks = self.webhooks.clone();
        webhooks.control.addr = "http://127.0.0.1:1".into();
        webhooks.validate().map_err(|e| within("webhooks", e))
    }
}

impl DevConfig {
    /// The inbound role's configuration as dev runs it: ingest's secret,
    /// events topic and link base URLs.
    pub fn inbound_config(&self) -> sluice_inbound::InboundConfig {
        let mut inbound = self.inbound.clone();
        inbound.secret = self.ingest.unsubscribe.secret.clone();
        inbound.events_topic = self.ingest.kafka.events_topic.clone();
        inbound.http.unsubscribe_base_url = self.ingest.unsubscribe.base_url.clone();
        inbound.http.tracking_base_url = self.ingest.tracking.base_url.clone();
        inbound
    }

    /// The defaults, overridden by `file` when given, then by `SLUICE_DEV_*`.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Ok(sluice_node::config::load(file)?)
    }

    /// The defaults, overridden by the TOML `text`.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(sluice_node::config::from_toml(text)?)
    }

    /// True when no `ingest.unsubscribe.secret` was given: the node keeps a
    /// generated one in `<data_dir>/unsubscribe.secret` ([`DevConfig::secret`]).
    pub fn generated_secret(&self) -> bool {
        self.ingest.unsubscribe.secret == SECRET_PLACEHOLDER
    }

    /// Refuses the well-known dev API key on an ingest listener other hosts
    /// can reach: anyone who read the README could send as tenant `dev`.
    pub fn check_exposure(&self) -> anyhow::Result<()> {
        if !has_dev_key(self) {
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
        if !self.generated_secret() {
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
                write_private(&file, &secret)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                secret
            }
            Err(err) => bail!("cannot read {}: {err}", file.display()),
        };
        self.ingest.unsubscribe.secret = secret;
        Ok(())
    }
}

impl DevConfig {
    /// True when the config gives control no credentials (and does not
    /// open it): the node then keeps a generated admin token in
    /// `<data_dir>/control.token` ([`DevConfig::control_token`]).
    pub fn generated_control_token(&self) -> bool {
        self.control.credentials.is_empty() && !self.control.allow_unauthenticated
    }

    /// The file holding the generated control admin token.
    pub fn control_token_file(&self) -> std::path::PathBuf {
        self.data_dir.join("control.token")
    }

    /// Gives control one admin credential, `dev-admin`, whose token is kept
    /// in `<data_dir>/control.token` (mode 0600, created on first start),
    /// unless the config names credentials or opens control.
    pub fn control_token(&mut self) -> anyhow::Result<()> {
        if !self.generated_control_token() {
            return Ok(());
        }
        let file = self.control_token_file();
        let token = match std::fs::read_to_string(&file) {
            Ok(token) => token.trim().to_owned(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let token = format!(
                    "{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                );
                write_private(&file, &token)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                token
            }
            Err(err) => bail!("cannot read {}: {err}", file.display()),
        };
        if token.is_empty() {
            bail!(
                "{} is empty; delete it and a new token is made",
                file.display()
            );
        }
        self.control.credentials = vec![sluice_control::Credential {
            name: "dev-admin".into(),
            role: sluice_control::Role::Admin,
            token_hash: sluice_node::secret::hash_secret(&token),
        }];
        Ok(())
    }
}

impl DevConfig {
    /// Gives the recorder's Query service control's credentials (so the
    /// token in `<data_dir>/control.token` is its admin token too) and the
    /// ingest tenants' API keys (a tenant's key reads its own messages and
    /// stats), unless the `[recorder]` table names its own; and, when
    /// `token_file` is the generated control token, gives it to the
    /// sender's reputation reads. Call after [`DevConfig::control_token`].
    pub fn query_access(&mut self, token_file: Option<PathBuf>) {
        let recorder = &mut self.recorder;
        if recorder.credentials.is_empty() && !recorder.allow_unauthenticated {
            recorder.credentials = self.control.credentials.clone();
            recorder.allow_unauthenticated = self.control.allow_unauthenticated;
        }
        if recorder.tenants.is_empty() && !recorder.control.enabled() {
            recorder.tenants = self
                .ingest
                .tenants
                .iter()
                .map(|t| sluice_recorder::auth::TenantKeysConfig {
                    name: t.name.clone(),
                    api_keys: t.api_keys.clone(),
                })
                .collect();
        }
        if let Some(file) = token_file {
            self.sender.reputation.token_file.get_or_insert(file);
        }
    }
}

/// Writes `text` to a new file only its owner may read (mode 0600).
fn write_private(file: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    out.write_all(text.as_bytes())?;
    out.sync_all()
}

/// True when a tenant still accepts the well-known `sluice-dev-key`, under
/// whatever salt its stored hash has.
pub fn has_dev_key(config: &DevConfig) -> bool {
    config.ingest.tenants.iter().any(|t| {
        t.api_keys.iter().any(|stored| {
            sluice_node::secret::SecretHash::parse(stored).is_ok_and(|hash| hash.verify(DEV_KEY))
        })
    })
}

/// The API key of tenant `dev` in the built-in defaults.
const DEV_KEY: &str = "sluice-dev-key";

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
            c.generated_secret(),
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
    fn a_role_check_names_the_role_table() {
        let err = DevConfig::from_toml("[sender]\npool = \"\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("`sender.pool`"), "{err:#}");
    }

    #[test]
    fn the_generated_secret_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = DevConfig::from_toml(&format!("data_dir = \"{}\"", dir.path().display()))
            .expect("config");
        c.secret().expect("secret");
        let mode = std::fs::metadata(dir.path().join("unsubscribe.secret"))
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(has_dev_key(&c));
        let own = include_str!("../../../../deploy/examples/dev.toml")
            .replace("sha256$80e0", "sha256$90e0");
        assert!(!has_dev_key(&DevConfig::from_toml(&own).expect("own key")));
        // The dev key hashed under another salt is still the dev key.
        let salted = format!(
            "[[ingest.tenants]]\nname = \"t\"\ndefault_pool = \"default\"\napi_keys = [\"{}\"]\n",
            sluice_node::secret::hash_secret(DEV_KEY)
        );
        assert!(has_dev_key(&DevConfig::from_toml(&salted).expect("salted")));
    }

    #[test]
    fn the_control_token_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = DevConfig::from_toml("").expect("defaults");
        c.data_dir = dir.path().to_path_buf();
        assert!(c.generated_control_token());
        c.control_token().expect("token");
        let file = c.control_token_file();
        let mode = std::fs::metadata(&file).expect("token file").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let token = std::fs::read_to_string(&file).expect("read");
        let hash = &c.control.credentials[0].token_hash;
        let parsed = sluice_node::secret::SecretHash::parse(hash).expect("hash");
        assert!(parsed.verify(token.trim()));
        // The next start uses the same token.
        let mut again = DevConfig::from_toml("").expect("defaults");
        again.data_dir = dir.path().to_path_buf();
        again.control_token().expect("token again");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), token);
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
