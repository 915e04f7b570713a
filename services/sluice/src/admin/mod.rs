//! `sluice admin`: the operator's commands. They talk gRPC to the control
//! service and print tables or JSON ([`render`]).

mod limits;
mod records;
mod render;
#[cfg(test)]
mod tests;
mod webhooks;

use std::io::Write;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use futures::StreamExt;
use sluice_proto::v1::control_client::ControlClient;
use sluice_proto::v1::*;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use records::{DeleteKind, ProviderCommand, SiteCommand, TenantCommand};
pub use webhooks::WebhookCommand;

/// A Control client that sends the bearer token on every call.
type Client = ControlClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every request (nothing without a
/// token).
#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Admin commands for the control service.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// List sending pools.
    #[command(after_help = "Example:\n  sluice admin pools\n  sluice admin pools --json")]
    Pools,
    /// Create or change a pool.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// List source IPs: pool, configured node, warm-up plan, EHLO name, state,
    /// and the current lease (owner, epoch, expiry; on the Cassandra store
    /// only).
    #[command(after_help = "Examples:\n  sluice admin ips\n  sluice admin ips --pool marketing")]
    Ips {
        /// Only the IPs of this pool.
        #[arg(long)]
        pool: Option<String>,
    },
    /// Create or change a source IP.
    #[command(subcommand)]
    Ip(IpCommand),
    /// List warm-up plans and their daily caps.
    Plans,
    /// Create or replace a warm-up plan.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// List tenants: domains, default pool, rate, state, and how many API
    /// keys, SMTP users and DKIM keys each has.
    Tenants,
    /// Create or replace a tenant.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// List, add, replace or remove a tenant's webhooks (signed posts of
    /// its events; docs/webhooks.md).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// List provider limits (shared by every site of one mailbox provider).
    #[command(after_help = "Example:\n  sluice admin providers")]
    Providers,
    /// Create or replace a provider's limits.
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// List site policies (limits per source IP and site).
    #[command(after_help = "Example:\n  sluice admin sites")]
    Sites,
    /// Create or replace a site policy.
    #[command(subcommand)]
    Site(SiteCommand),
    /// Delete a pool, IP, warm-up plan, site policy, tenant or provider.
    /// A pool still used by IPs or tenants, or a plan still used by IPs, is
    /// not deleted: the answer names who uses it.
    #[command(after_help = "Examples:\n  sluice admin delete ip 192.0.2.10\n  \
                            sluice admin delete tenant acme\n  \
                            sluice admin delete pool marketing   # after moving its IPs and tenants")]
    Delete {
        /// What to delete.
        #[arg(value_enum)]
        kind: DeleteKind,
        /// Its name (for an IP, its address).
        name: String,
    },
    /// Add an address to a tenant's suppression list in control (ingest still
    /// checks only its own config's `suppressed` list; docs/control.md).
    #[command(
        after_help = "Example:\n  sluice admin suppress acme bob@example.com --reason complaint"
    )]
    Suppress {
        /// Tenant name.
        tenant: String,
        /// Email address to suppress.
        address: String,
        /// One of hard_bounce, complaint, unsubscribe, manual.
        #[arg(long, default_value = "manual")]
        reason: String,
    },
    /// Remove an address from a tenant's suppression list.
    #[command(after_help = "Example:\n  sluice admin unsuppress acme bob@example.com")]
    Unsuppress {
        /// Tenant name.
        tenant: String,
        /// Email address to allow again.
        address: String,
    },
    /// List a tenant's suppressed addresses, in address order.
    #[command(after_help = "Example:\n  sluice admin suppressions acme --limit 50")]
    Suppressions {
        /// Tenant name.
        tenant: String,
        /// Most addresses to print.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Follow configuration changes as they happen (Ctrl-C to stop).
    #[command(
        after_help = "Examples:\n  sluice admin watch                # everything, then live changes\n  \
                            sluice admin watch --after 42     # changes after revision 42\n  \
                            sluice admin watch --count 1      # stop after one change"
    )]
    Watch {
        /// Start after this revision; 0 replays the whole configuration.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Stop after this many changes.
        #[arg(long)]
        count: Option<usize>,
    },
}

/// `sluice admin pool ...`
#[derive(Debug, Clone, Subcommand)]
pub enum PoolCommand {
    /// Create a pool, or change its description.
    #[command(
        after_help = "Example:\n  sluice admin pool put marketing --description \"bulk newsletters\""
    )]
    Put {
        /// Pool name: letters, digits, `.`, `_`, `-`.
        name: String,
        /// Free text for operators.
        #[arg(long, default_value = "")]
        description: String,
    },
}

/// `sluice admin ip ...`
#[derive(Debug, Clone, Subcommand)]
pub enum IpCommand {
    /// Add a source IP to a pool, or change it. The pool (and the plan, if
    /// given) must exist.
    #[command(after_help = "Examples:\n  sluice admin pool put marketing\n  \
                            sluice admin plan put new-ip --steps 50,100,250,500,1000\n  \
                            sluice admin ip put 192.0.2.10 --pool marketing --warmup new-ip --node sender-1\n  \
                            sluice admin ip put 192.0.2.11 --pool marketing --limit messages_per_minute=300 \\\n      \
                            --site-limit gmail:max_connections=2")]
    Put {
        /// IPv4 or IPv6 literal.
        address: String,
        /// Pool the IP sends for.
        #[arg(long)]
        pool: String,
        /// Warm-up plan; leave out for an IP that is already warm.
        #[arg(long)]
        warmup: Option<String>,
        /// Sender node that owns the IP.
        #[arg(long)]
        node: Option<String>,
        /// EHLO name announced from this IP (must match its PTR record).
        #[arg(long)]
        ehlo: Option<String>,
        /// Stop sending from this IP.
        #[arg(long)]
        paused: bool,
        /// A limit for every site sent from this IP, over the site
        /// policies: `name=value` (repeat for several; names as in
        /// `shaping.limits`, e.g. messages_per_minute, burst).
        #[arg(long = "limit")]
        limits: Vec<String>,
        /// A limit for one site sent from this IP: `site:name=value`.
        #[arg(long = "site-limit")]
        site_limits: Vec<String>,
    },
}

/// `sluice admin plan ...`
#[derive(Debug, Clone, Subcommand)]
pub enum PlanCommand {
    /// Create or replace a warm-up plan: one daily cap per day, from day 1.
    #[command(
        after_help = "Example:\n  sluice admin plan put new-ip --steps 50,100,250,500,1000,2500 \\\n      --site-cap 1:gmail=20 --site-cap 2:gmail=40"
    )]
    Put {
        /// Plan name.
        name: String,
        /// Daily caps for day 1, 2, 3, ... separated by commas.
        #[arg(long, value_delimiter = ',', required = true)]
        steps: Vec<u64>,
        /// A daily cap for one site on one day: `day:site=cap` (repeat).
        #[arg(long = "site-cap")]
        site_caps: Vec<String>,
    },
}

/// Runs `cmd` against control at `endpoint` (`host:port` or a URL) with
/// `token` as bearer, and prints the result to standard output: tables, or
/// JSON with `json`.
pub async fn run_admin(control: Control<'_>, cmd: AdminCommand, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    run_admin_to(control, cmd, json, &mut out).await
}

/// Control's address, the token to send and the TLS settings for
/// `https://` addresses.
pub type Control<'a> = (&'a str, Option<&'a str>, &'a sluice_node::tls::TlsConfig);

/// [`run_admin`] writing to `out`.
pub async fn run_admin_to(
    (endpoint, token, tls): Control<'_>,
    cmd: AdminCommand,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let url = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let bearer = match token.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .context("--token must be printable ASCII")?,
        ),
        None => None,
    };
    let channel = sluice_node::tls::endpoint(&url, tls)
        .with_context(|| format!("`{url}` is not a valid control address"))?
        .connect()
        .await
        .map_err(|e| {
            anyhow!(
                "cannot reach control at {url} ({e}); start it with `sluice control` \
                 (or `sluice dev`), or point the admin command at a running control service"
            )
        })?;
    let mut client = ControlClient::with_interceptor(channel, Bearer(bearer));
    execute(&mut client, cmd, json, out)
        .await
        .map_err(|e| match e.downcast::<tonic::Status>() {
            Ok(status) => explain(&url, &status),
            Err(other) => other,
        })
}

/// Turns a server error into a message that says what to do next.
fn explain(url: &str, status: &tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let msg = status.message();
    let next = match status.code() {
        Code::InvalidArgument if msg.contains("does not exist") => {
            "Nothing was changed. Create it first (`sluice admin pool put NAME`, \
             `sluice admin plan put NAME --steps ...`), then retry."
        }
        Code::InvalidArgument => "Nothing was changed. Fix that field and retry.",
        Code::Aborted => "Another change raced this one; retry.",
        Code::Unauthenticated => {
            "Pass a control token with --token or SLUICE_CONTROL_TOKEN (`sluice dev` keeps \
             its admin token in <data_dir>/control.token)."
        }
        Code::PermissionDenied => "Nothing was changed. Use a token with that role.",
        Code::FailedPrecondition if msg.contains("still used") => {
            "Nothing was changed. Move or delete those records first, then retry."
        }
        Code::Unavailable => {
            "Control or its database is unavailable; check that control is running \
             and that its store is reachable, then retry."
        }
        _ => "See the control service's log for details.",
    };
    anyhow!("control at {url} answered: {msg}\n{next}")
}

async fn execute(
    client: &mut Client,
    cmd: AdminCommand,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let text = match cmd {
        AdminCommand::Pools => {
            let pools = client.list_pools(ListPoolsRequest {}).await?.into_inner();
            render::pools(&pools.pools, json)
        }
        AdminCommand::Pool(PoolCommand::Put { name, description }) => {
            let pool = client.put_pool(Pool { name, description }).await?;
            render::pools(&[pool.into_inner()], json)
        }
        AdminCommand::Ips { pool } => {
            let pool = pool.unwrap_or_default();
            let ips = client.list_ips(ListIpsRequest { pool }).await?;
            render::ips(&ips.into_inner().ips, json)
        }
        AdminCommand::Ip(IpCommand::Put {
            address,
            pool,
            warmup,
            node,
            ehlo,
            paused,
            limits,
            site_limits,
        }) => {
            let ip = SourceIp {
                address,
                pool,
                owner_node: node.unwrap_or_default(),
                warmup_plan: warmup.unwrap_or_default(),
                ehlo_name: ehlo.unwrap_or_default(),
                paused,
                lease: None,
                limits: self::limits::ip_limits(&limits)?,
                site_limits: self::limits::site_limits(&site_limits)?,
            };
            render::ips(&[client.put_ip(ip).await?.into_inner()], json)
        }
        AdminCommand::Plans => {
            let plans = client.list_warmup_plans(ListWarmupPlansRequest {}).await?;
            render::plans(&plans.into_inner().plans, json)
        }
        AdminCommand::Plan(PlanCommand::Put {
            name,
            steps,
            site_caps,
        }) => {
            let mut steps: Vec<WarmupStep> = (1..)
                .zip(steps)
                .map(|(day, daily_cap)| WarmupStep {
                    day,
                    daily_cap,
                    ..WarmupStep::default()
                })
                .collect();
            self::limits::add_site_caps(&mut steps, &site_caps)?;
            let plan = client.put_warmup_plan(WarmupPlan { name, steps }).await?;
            render::plans(&[plan.into_inner()], json)
        }
        AdminCommand::Tenants => {
            let tenants = client.list_tenants(ListTenantsRequest {}).await?;
            render::tenants(&tenants.into_inner().tenants, json)
        }
        AdminCommand::Tenant(cmd) => records::tenant(client, cmd, json).await?,
        AdminCommand::Providers => records::providers(client, json).await?,
        AdminCommand::Provider(cmd) => records::provider(client, cmd, json).await?,
        AdminCommand::Sites => records::sites(client, json).await?,
        AdminCommand::Site(cmd) => records::site(client, cmd, json).await?,
        AdminCommand::Delete { kind, name } => records::delete(client, kind, name, json).await?,
        other => return execute_more(client, other, json, out).await,
    };
    out.write_all(text.as_bytes()).context("writing output")
}

async fn execute_more(
    client: &mut Client,
    cmd: AdminCommand,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let text = match cmd {
        AdminCommand::Suppress {
            tenant,
            address,
            reason,
        } => {
            let s = Suppression {
                tenant,
                address,
                reason,
                created_at: None,
            };
            render::suppressions(&[client.add_suppression(s).await?.into_inner()], json)
        }
        AdminCommand::Unsuppress { tenant, address } => {
            let req = RemoveSuppressionRequest {
                tenant: tenant.clone(),
                address: address.clone(),
            };
            let removed = client.remove_suppression(req).await?.into_inner().removed;
            render::removed(&tenant, &address, removed, json)
        }
        AdminCommand::Suppressions { tenant, limit } => {
            let list = all_suppressions(client, tenant, limit).await?;
            render::suppressions(&list, json)
        }
        AdminCommand::Watch { after, count } => {
            return watch(client, after, count, json, out).await;
        }
        AdminCommand::Webhook(cmd) => webhooks::execute(client, cmd, json).await?,
        _ => unreachable!("handled by execute"),
    };
    out.write_all(text.as_bytes()).context("writing output")
}

async fn all_suppressions(
    client: &mut Client,
    tenant: String,
    limit: usize,
) -> anyhow::Result<Vec<Suppression>> {
    let mut list = Vec::new();
    let mut page_token = String::new();
    while list.len() < limit {
        let want = u32::try_from(limit - list.len()).unwrap_or(u32::MAX);
        let req = ListSuppressionsRequest {
            tenant: tenant.clone(),
            page_token,
            page_size: want.min(sluice_control::MAX_PAGE_SIZE),
        };
        let page = client.list_suppressions(req).await?.into_inner();
        list.extend(page.suppressions);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(list)
}

async fn watch(
    client: &mut Client,
    after: u64,
    count: Option<usize>,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let req = WatchRequest {
        node: "sluice-admin".into(),
        after_revision: after,
    };
    let mut stream = client.watch(req).await?.into_inner();
    let mut seen = 0;
    while count.is_none_or(|c| seen < c) {
        let Some(change) = stream.next().await else {
            break;
        };
        let line = render::change(&change?, json);
        writeln!(out, "{line}").context("writing output")?;
        out.flush().context("writing output")?;
        seen += 1;
    }
    Ok(())
}
