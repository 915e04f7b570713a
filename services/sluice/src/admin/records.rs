//! `sluice admin` commands for tenants, providers, site policies and
//! deletes.

use anyhow::{Context, anyhow};
use clap::{Subcommand, ValueEnum};
use sluice_proto::v1::*;

use super::{Client, render};

/// `sluice admin tenant ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TenantCommand {
    /// Create or replace a tenant. A put replaces the whole tenant: give
    /// every domain, key, user and DKIM key it should keep.
    #[command(after_help = "Examples:\n  \
        printf %s 'the-api-key' | sluice hash-secret             # -> sha256$...\n  \
        printf %s 'smtp password' | sluice hash-secret --password  # -> $argon2id$...\n  \
        sluice admin tenant put acme --domain acme.example --pool marketing --rate 100 \\\n      \
        --api-key-hash 'sha256$...' --smtp-user 'newsletter:$argon2id$...' \\\n      \
        --dkim acme.example:s2026:/etc/sluice/dkim/acme.pem:ed25519-sha256 \\\n      \
        --bounce-domain bounces.acme.example\n  \
        sluice admin tenant put acme --domain acme.example --paused   # refuse its mail")]
    Put {
        /// Tenant name: letters, digits, `.`, `_`, `-`.
        name: String,
        /// A sending domain (repeat for several).
        #[arg(long = "domain")]
        domains: Vec<String>,
        /// Pool used when a submission names none.
        #[arg(long)]
        pool: Option<String>,
        /// Submissions per second allowed; 0 means no limit.
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Refuse the tenant's submissions (403 at every ingest node).
        #[arg(long)]
        paused: bool,
        /// An API key's hash from `sluice hash-secret` (repeat; at most 64).
        #[arg(long = "api-key-hash")]
        api_key_hashes: Vec<String>,
        /// An SMTP submission user, `USERNAME:HASH` with the hash of its
        /// password (`sluice hash-secret --password`); repeat for several.
        #[arg(long = "smtp-user", value_parser = parse_smtp_user)]
        smtp_users: Vec<SmtpUser>,
        /// A DKIM key, `DOMAIN:SELECTOR:KEY_REF[:ALGORITHM]`: KEY_REF is the
        /// path of the PEM on the nodes, ALGORITHM `rsa-sha256` (default) or
        /// `ed25519-sha256`; DOMAIN must be one of --domain. Repeat.
        #[arg(long = "dkim", value_parser = parse_dkim)]
        dkim_keys: Vec<DkimKey>,
        /// Domain of VERP return paths; leave out to use the From domain.
        #[arg(long)]
        bounce_domain: Option<String>,
        /// Trace every submission of the tenant whatever the sampling
        /// ratio, on nodes that export traces (`--otlp-endpoint`).
        #[arg(long)]
        trace: bool,
        /// Report mail the tenant submits over SMTP that finally bounces or
        /// expires to the submission's MAIL FROM, with a delivery status
        /// notification (RFC 3464).
        #[arg(long)]
        smtp_dsn: bool,
        /// Allow the tenant's submissions to ask for open and click
        /// tracking (`SendRequest.tracking`); without it they are refused.
        #[arg(long)]
        tracking: bool,
    },
}

/// `sluice admin provider ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ProviderCommand {
    /// Create or replace a provider's limits, per source IP over all its
    /// sites; 0 (the default) means no limit.
    #[command(after_help = "Example:\n  \
        sluice admin provider put microsoft --per-minute 300 --per-day 50000 --connections 10")]
    Put {
        /// Provider name, e.g. `microsoft`.
        name: String,
        /// Messages per minute.
        #[arg(long, default_value_t = 0)]
        per_minute: u32,
        /// Messages per hour.
        #[arg(long, default_value_t = 0)]
        per_hour: u32,
        /// Messages per day.
        #[arg(long, default_value_t = 0)]
        per_day: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 0)]
        connections: u32,
        /// Messages per second.
        #[arg(long, default_value_t = 0)]
        per_second: u32,
        /// Messages that may leave back to back within the per-second,
        /// per-minute and new-connection limits (0: the sender's default).
        #[arg(long, default_value_t = 0)]
        burst: u32,
    },
}

/// `sluice admin site ...`
#[derive(Debug, Clone, Subcommand)]
pub enum SiteCommand {
    /// Create or replace a site policy: limits per (source IP, site); 0 (the
    /// default) means no limit.
    #[command(after_help = "Example:\n  \
        sluice admin site put gmail --per-minute 600 --connections 10 --require-tls")]
    Put {
        /// Site name, e.g. `gmail`.
        site: String,
        /// Messages per minute.
        #[arg(long, default_value_t = 0)]
        per_minute: u32,
        /// Messages per hour.
        #[arg(long, default_value_t = 0)]
        per_hour: u32,
        /// Messages per day.
        #[arg(long, default_value_t = 0)]
        per_day: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 0)]
        connections: u32,
        /// New connections per minute.
        #[arg(long, default_value_t = 0)]
        new_connections_per_minute: u32,
        /// Messages per connection before it is closed.
        #[arg(long, default_value_t = 0)]
        per_connection: u32,
        /// Recipients per SMTP transaction.
        #[arg(long, default_value_t = 0)]
        recipients: u32,
        /// Deliver only over TLS.
        #[arg(long)]
        require_tls: bool,
        /// Messages per second.
        #[arg(long, default_value_t = 0)]
        per_second: u32,
        /// Messages that may leave back to back within the per-second,
        /// per-minute and new-connection limits (0: the sender's default).
        #[arg(long, default_value_t = 0)]
        burst: u32,
    },
}

/// What `sluice admin delete` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeleteKind {
    Pool,
    Ip,
    Plan,
    Site,
    Tenant,
    Provider,
}

impl DeleteKind {
    fn proto(self) -> RecordKind {
        match self {
            DeleteKind::Pool => RecordKind::Pool,
            DeleteKind::Ip => RecordKind::Ip,
            DeleteKind::Plan => RecordKind::WarmupPlan,
            DeleteKind::Site => RecordKind::SitePolicy,
            DeleteKind::Tenant => RecordKind::Tenant,
            DeleteKind::Provider => RecordKind::Provider,
        }
    }
}

fn parse_smtp_user(arg: &str) -> Result<SmtpUser, String> {
    // A hash holds no `:`, so the last one separates it from the name.
    let (username, password_hash) = arg
        .rsplit_once(':')
        .ok_or("expected USERNAME:HASH (hash from `sluice hash-secret --password`)")?;
    Ok(SmtpUser {
        username: username.to_owned(),
        password_hash: password_hash.to_owned(),
    })
}

fn parse_dkim(arg: &str) -> Result<DkimKey, String> {
    let mut parts = arg.splitn(3, ':');
    let (Some(domain), Some(selector), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("expected DOMAIN:SELECTOR:KEY_REF[:ALGORITHM]".into());
    };
    let (key_ref, algorithm) = match rest.rsplit_once(':') {
        Some((key_ref, alg)) if ["rsa-sha256", "ed25519-sha256"].contains(&alg) => (key_ref, alg),
        _ => (rest, ""),
    };
    Ok(DkimKey {
        domain: domain.to_owned(),
        selector: selector.to_owned(),
        algorithm: algorithm.to_owned(),
        key_ref: key_ref.to_owned(),
    })
}

pub(super) async fn tenant(
    client: &mut Client,
    cmd: TenantCommand,
    json: bool,
) -> anyhow::Result<String> {
    let TenantCommand::Put {
        name,
        domains,
        pool,
        rate,
        paused,
        api_key_hashes,
        smtp_users,
        dkim_keys,
        bounce_domain,
        trace,
        smtp_dsn,
        tracking,
    } = cmd;
    let name_of_put = name.clone();
    let tenant = Tenant {
        name,
        sending_domains: domains,
        default_pool: pool.unwrap_or_default(),
        rate_quota: rate,
        paused,
        api_key_hashes,
        smtp_users,
        dkim_keys,
        bounce_domain: bounce_domain.unwrap_or_default(),
        trace,
        smtp_dsn,
        tracking,
        // Kept: webhooks are managed with `sluice admin webhook`.
        webhooks: super::webhooks::stored(client, &name_of_put).await?,
    };
    let put = client.put_tenant(tenant).await?.into_inner();
    Ok(render::tenants(&[put], json))
}

pub(super) async fn providers(client: &mut Client, json: bool) -> anyhow::Result<String> {
    let list = client.list_providers(ListProvidersRequest {}).await?;
    Ok(render::providers(&list.into_inner().providers, json))
}

pub(super) async fn provider(
    client: &mut Client,
    cmd: ProviderCommand,
    json: bool,
) -> anyhow::Result<String> {
    let ProviderCommand::Put {
        name,
        per_minute,
        per_hour,
        per_day,
        connections,
        per_second,
        burst,
    } = cmd;
    let p = Provider {
        name,
        messages_per_minute: per_minute,
        messages_per_hour: per_hour,
        messages_per_day: per_day,
        max_connections: connections,
        messages_per_second: per_second,
        burst,
    };
    let put = client.put_provider(p).await?.into_inner();
    Ok(render::providers(&[put], json))
}

pub(super) async fn sites(client: &mut Client, json: bool) -> anyhow::Result<String> {
    let list = client
        .list_site_policies(ListSitePoliciesRequest {})
        .await?;
    Ok(render::sites(&list.into_inner().policies, json))
}

pub(super) async fn site(
    client: &mut Client,
    cmd: SiteCommand,
    json: bool,
) -> anyhow::Result<String> {
    let SiteCommand::Put {
        site,
        per_minute,
        per_hour,
        per_day,
        connections,
        new_connections_per_minute,
        per_connection,
        recipients,
        require_tls,
        per_second,
        burst,
    } = cmd;
    let policy = SitePolicy {
        site,
        messages_per_minute: per_minute,
        messages_per_hour: per_hour,
        messages_per_day: per_day,
        max_connections: connections,
        new_connections_per_minute,
        messages_per_connection: per_connection,
        recipients_per_transaction: recipients,
        require_tls,
        messages_per_second: per_second,
        burst,
        changed_at: None,
    };
    let put = client.put_site_policy(policy).await?.into_inner();
    Ok(render::sites(&[put], json))
}

pub(super) async fn delete(
    client: &mut Client,
    kind: DeleteKind,
    name: String,
    json: bool,
) -> anyhow::Result<String> {
    let req = DeleteRequest {
        kind: kind.proto().into(),
        name: name.clone(),
    };
    let deleted = client.delete(req).await?.into_inner().deleted;
    let what = kind
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .ok_or_else(|| anyhow!("unnamed kind"))
        .context("naming the kind")?;
    Ok(render::deleted(&what, &name, deleted, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_users_and_dkim_keys_parse() {
        let u = parse_smtp_user("bob@acme.example:$argon2id$v=19$m=1,t=2,p=1$s$h").unwrap();
        assert_eq!(u.username, "bob@acme.example");
        assert!(u.password_hash.starts_with("$argon2id$"));
        assert!(parse_smtp_user("nohash").is_err());
        let k = parse_dkim("acme.example:s1:/keys/a.pem").unwrap();
        assert_eq!(
            (k.key_ref.as_str(), k.algorithm.as_str()),
            ("/keys/a.pem", "")
        );
        let k = parse_dkim("acme.example:s1:/keys/a.pem:ed25519-sha256").unwrap();
        assert_eq!(k.algorithm, "ed25519-sha256");
        assert_eq!(k.key_ref, "/keys/a.pem");
        assert!(parse_dkim("acme.example:s1").is_err());
    }
}
