//! The read side of [`CqlConfigStore`]: records by kind, one suppression,
//! the IP leases.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::SystemTime;

use scylla::value::CqlValue;
use sluice_proto::v1::{IpLease, Suppression, WarmupPlan};

use super::CqlConfigStore;
use crate::ControlError;
use crate::record::{Kind, Record};
use crate::store::cql_rows::{self as rows, text};

const POOL_COLS: &str = "name, description";
const IP_COLS: &str =
    "address, pool, owner_node, warmup_plan, ehlo_name, paused, limits, site_limits";
const PLAN_COLS: &str = "name, day, daily_cap, hourly_cap, site_caps";
const SITE_COLS: &str = "site, messages_per_minute, messages_per_hour, messages_per_day, \
     max_connections, new_connections_per_minute, messages_per_connection, \
     recipients_per_transaction, require_tls, messages_per_second, burst, changed_at";
const TENANT_COLS: &str = "name, sending_domains, default_pool, rate_quota, paused, \
     api_key_hashes, smtp_users, dkim_keys, bounce_domain, trace, webhooks, smtp_dsn, tracking";
const PROVIDER_COLS: &str = "name, messages_per_minute, messages_per_hour, messages_per_day, \
     max_connections, messages_per_second, burst";

/// Groups warm-up step rows into plans, in row order.
fn plans_from(steps: Vec<rows::StepRow>) -> Vec<WarmupPlan> {
    let mut plans: Vec<WarmupPlan> = Vec::new();
    for row in &steps {
        match plans.last_mut() {
            Some(plan) if plan.name == row.0 => plan.steps.push(rows::step_from(row)),
            _ => plans.push(WarmupPlan {
                name: row.0.clone(),
                steps: vec![rows::step_from(row)],
            }),
        }
    }
    plans
}

impl CqlConfigStore {
    /// Records of `kind`; `name` narrows to one.
    pub(super) async fn select(
        &self,
        kind: Kind,
        name: Option<&str>,
    ) -> Result<Vec<Record>, ControlError> {
        let ks = &self.inner.ks;
        let (table, cols, key) = match kind {
            Kind::Pool => ("config_pools", POOL_COLS, "name"),
            Kind::Ip => ("config_ips", IP_COLS, "address"),
            Kind::WarmupPlan => ("config_warmup_plans", PLAN_COLS, "name"),
            Kind::SitePolicy => ("config_site_policies", SITE_COLS, "site"),
            Kind::Tenant => ("config_tenants", TENANT_COLS, "name"),
            Kind::Provider => ("config_providers", PROVIDER_COLS, "name"),
        };
        let mut cql = format!("SELECT {cols} FROM {ks}.{table}");
        let values: Vec<CqlValue> = match name {
            Some(n) => {
                cql.push_str(&format!(" WHERE {key} = ?"));
                vec![text(n)]
            }
            None => Vec::new(),
        };
        let mut records: Vec<Record> = match kind {
            Kind::Pool => map(self.rows(&cql, values).await?, |r| {
                Record::Pool(rows::pool_from(r))
            }),
            Kind::Ip => map(self.rows(&cql, values).await?, |r| {
                Record::Ip(rows::ip_from(r))
            }),
            Kind::WarmupPlan => plans_from(self.rows(&cql, values).await?)
                .into_iter()
                .map(Record::WarmupPlan)
                .collect(),
            Kind::SitePolicy => map(self.rows(&cql, values).await?, |r| {
                Record::SitePolicy(rows::site_from(r))
            }),
            Kind::Tenant => self
                .rows(&cql, values)
                .await?
                .into_iter()
                .map(|r| rows::tenant_from(r).map(Record::Tenant))
                .collect::<Result<_, _>>()?,
            Kind::Provider => map(self.rows(&cql, values).await?, |r| {
                Record::Provider(rows::provider_from(r))
            }),
        };
        records.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(records)
    }

    /// The unexpired rows of the sender's `ip_leases` (one small partition
    /// per pool; read whole), by canonical IP address.
    pub(super) async fn unexpired_leases(&self) -> Result<HashMap<String, IpLease>, ControlError> {
        let ks = &self.inner.ks;
        let cql = format!("SELECT ip, owner, epoch, expires FROM {ks}.ip_leases");
        let found: Vec<rows::LeaseRow> = self.rows(&cql, ()).await?;
        let now = rows::timestamp_millis(Some(&prost_types::Timestamp::from(SystemTime::now())));
        let mut leases = HashMap::new();
        for (ip, owner, epoch, expires) in found {
            let (Some(owner), Some(expires)) = (owner, expires) else {
                continue;
            };
            if expires.0 <= now || owner.is_empty() {
                continue;
            }
            let address = ip.parse::<IpAddr>().map_or(ip, |a| a.to_string());
            let lease = IpLease {
                node: owner,
                epoch: epoch.and_then(|e| u64::try_from(e).ok()).unwrap_or(0),
                expires_at: Some(rows::timestamp(expires.0)),
            };
            leases.insert(address, lease);
        }
        Ok(leases)
    }

    pub(super) async fn get_suppression(
        &self,
        tenant: &str,
        address: &str,
    ) -> Result<Option<Suppression>, ControlError> {
        let ks = &self.inner.ks;
        let cql = format!(
            "SELECT tenant, address, reason, created_at FROM {ks}.config_suppressions \
             WHERE tenant = ? AND address = ?"
        );
        let found: Vec<rows::SuppressionRow> = self.rows(&cql, (tenant, address)).await?;
        Ok(found.into_iter().next().map(rows::suppression_from))
    }
}

pub(super) fn map<R, T>(rows: Vec<R>, f: impl FnMut(R) -> T) -> Vec<T> {
    rows.into_iter().map(f).collect()
}
