//! Tables (comfy-table) and JSON for the admin commands' output.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};
use sluice_proto::v1::config_change::Change;
use sluice_proto::v1::*;

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    format!("{t}\n")
}

fn to_json(values: Vec<Value>) -> String {
    format!("{}\n", Value::Array(values))
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

fn pool_json(p: &Pool) -> Value {
    json!({"name": p.name, "description": p.description})
}

fn lease_json(lease: Option<&IpLease>) -> Value {
    match lease {
        Some(l) => json!({"node": l.node, "epoch": l.epoch, "expires_at": expiry(l)}),
        None => Value::Null,
    }
}

fn expiry(l: &IpLease) -> String {
    l.expires_at.map(|t| t.to_string()).unwrap_or_default()
}

fn ip_json(ip: &SourceIp) -> Value {
    json!({"address": ip.address, "pool": ip.pool, "owner_node": ip.owner_node,
           "warmup_plan": ip.warmup_plan, "ehlo_name": ip.ehlo_name, "paused": ip.paused,
           "lease": lease_json(ip.lease.as_ref()),
           "limits": ip.limits.as_ref().map(limits_json),
           "site_limits": ip.site_limits.iter()
               .map(|(site, l)| (site.clone(), limits_json(l)))
               .collect::<serde_json::Map<String, Value>>()})
}

fn limits_json(l: &sluice_proto::v1::LimitOverrides) -> Value {
    json!({"messages_per_second": l.messages_per_second,
           "messages_per_minute": l.messages_per_minute,
           "messages_per_hour": l.messages_per_hour, "messages_per_day": l.messages_per_day,
           "burst": l.burst, "max_connections": l.max_connections,
           "new_connections_per_minute": l.new_connections_per_minute,
           "messages_per_connection": l.messages_per_connection,
           "recipients_per_transaction": l.recipients_per_transaction})
}

fn provider_json(p: &Provider) -> Value {
    json!({"name": p.name, "messages_per_minute": p.messages_per_minute,
           "messages_per_hour": p.messages_per_hour, "messages_per_day": p.messages_per_day,
           "max_connections": p.max_connections,
           "messages_per_second": p.messages_per_second, "burst": p.burst})
}

fn kind_name(kind: i32) -> &'static str {
    match RecordKind::try_from(kind) {
        Ok(RecordKind::Pool) => "pool",
        Ok(RecordKind::Ip) => "ip",
        Ok(RecordKind::WarmupPlan) => "warmup_plan",
        Ok(RecordKind::SitePolicy) => "site_policy",
        Ok(RecordKind::Tenant) => "tenant",
        Ok(RecordKind::Provider) => "provider",
        _ => "unknown",
    }
}

fn plan_json(p: &WarmupPlan) -> Value {
    let steps: Vec<Value> = p
        .steps
        .iter()
        .map(|s| {
            json!({"day": s.day, "daily_cap": s.daily_cap, "hourly_cap": s.hourly_cap,
                   "site_caps": s.site_caps})
        })
        .collect();
    json!({"name": p.name, "steps": steps})
}

fn site_json(s: &SitePolicy) -> Value {
    json!({"site": s.site, "messages_per_minute": s.messages_per_minute,
           "messages_per_hour": s.messages_per_hour, "messages_per_day": s.messages_per_day,
           "max_connections": s.max_connections,
           "new_connections_per_minute": s.new_connections_per_minute,
           "messages_per_connection": s.messages_per_connection,
           "recipients_per_transaction": s.recipients_per_transaction,
           "require_tls": s.require_tls,
           "messages_per_second": s.messages_per_second, "burst": s.burst,
           "changed_at": changed(s)})
}

/// When control last changed the policy (RFC 3339), empty if never stamped.
fn changed(s: &SitePolicy) -> String {
    s.changed_at.map(|t| t.to_string()).unwrap_or_default()
}

fn tenant_json(t: &Tenant) -> Value {
    let users: Vec<Value> = t
        .smtp_users
        .iter()
        .map(|u| json!({"username": u.username, "password_hash": u.password_hash}))
        .collect();
    let dkim: Vec<Value> = t
        .dkim_keys
        .iter()
        .map(|k| {
            json!({"domain": k.domain, "selector": k.selector, "algorithm": k.algorithm,
                   "key_ref": k.key_ref})
        })
        .collect();
    json!({"name": t.name, "sending_domains": t.sending_domains,
           "default_pool": t.default_pool, "rate_quota": t.rate_quota, "paused": t.paused,
           "api_key_hashes": t.api_key_hashes, "smtp_users": users, "dkim_keys": dkim,
           "bounce_domain": t.bounce_domain})
}

fn created(s: &Suppression) -> String {
    s.created_at.map(|t| t.to_string()).unwrap_or_default()
}

fn suppression_json(s: &Suppression) -> Value {
    json!({"tenant": s.tenant, "address": s.address, "reason": s.reason,
           "created_at": created(s)})
}

pub(super) fn pools(pools: &[Pool], json: bool) -> String {
    if json {
        return to_json(pools.iter().map(pool_json).collect());
    }
    let rows = pools
        .iter()
        .map(|p| vec![p.name.clone(), or_dash(&p.description)])
        .collect();
    table(&["pool", "description"], rows)
}

pub(super) fn ips(ips: &[SourceIp], json: bool) -> String {
    if json {
        return to_json(ips.iter().map(ip_json).collect());
    }
    let rows = ips
        .iter()
        .map(|ip| {
            vec![
                ip.address.clone(),
                ip.pool.clone(),
                or_dash(&ip.owner_node),
                or_dash(&ip.warmup_plan),
                or_dash(&ip.ehlo_name),
                if ip.paused { "paused" } else { "active" }.into(),
                ip.lease.as_ref().map_or("-".into(), |l| l.node.clone()),
                ip.lease
                    .as_ref()
                    .map_or("-".into(), |l| l.epoch.to_string()),
                ip.lease.as_ref().map_or("-".into(), expiry),
            ]
        })
        .collect();
    table(
        &[
            "address",
            "pool",
            "node",
            "warm-up",
            "ehlo",
            "state",
            "lease owner",
            "epoch",
            "lease expires",
        ],
        rows,
    )
}

pub(super) fn plans(plans: &[WarmupPlan], json: bool) -> String {
    if json {
        return to_json(plans.iter().map(plan_json).collect());
    }
    let rows = plans
        .iter()
        .map(|p| {
            let caps: Vec<String> = p.steps.iter().map(|s| s.daily_cap.to_string()).collect();
            vec![p.name.clone(), p.steps.len().to_string(), caps.join(", ")]
        })
        .collect();
    table(&["plan", "days", "daily caps (day 1, 2, ...)"], rows)
}

pub(super) fn tenants(tenants: &[Tenant], json: bool) -> String {
    if json {
        return to_json(tenants.iter().map(tenant_json).collect());
    }
    let rows = tenants
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                or_dash(&t.sending_domains.join(", ")),
                or_dash(&t.default_pool),
                t.rate_quota.to_string(),
                if t.paused { "paused" } else { "active" }.into(),
                t.api_key_hashes.len().to_string(),
                t.smtp_users.len().to_string(),
                or_dash(
                    &t.dkim_keys
                        .iter()
                        .map(|k| format!("{}._domainkey.{}", k.selector, k.domain))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                or_dash(&t.bounce_domain),
            ]
        })
        .collect();
    table(
        &[
            "tenant",
            "sending domains",
            "default pool",
            "rate/s",
            "state",
            "api keys",
            "smtp users",
            "dkim",
            "bounce domain",
        ],
        rows,
    )
}

fn limit(v: impl Into<u64>) -> String {
    match v.into() {
        0 => "-".into(),
        n => n.to_string(),
    }
}

pub(super) fn providers(list: &[Provider], json: bool) -> String {
    if json {
        return to_json(list.iter().map(provider_json).collect());
    }
    let rows = list
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                limit(p.messages_per_second),
                limit(p.messages_per_minute),
                limit(p.messages_per_hour),
                limit(p.messages_per_day),
                limit(p.max_connections),
                limit(p.burst),
            ]
        })
        .collect();
    table(
        &[
            "provider",
            "per second",
            "per minute",
            "per hour",
            "per day",
            "connections",
            "burst",
        ],
        rows,
    )
}

pub(super) fn sites(list: &[SitePolicy], json: bool) -> String {
    if json {
        return to_json(list.iter().map(site_json).collect());
    }
    let rows = list
        .iter()
        .map(|s| {
            vec![
                s.site.clone(),
                limit(s.messages_per_second),
                limit(s.messages_per_minute),
                limit(s.messages_per_hour),
                limit(s.messages_per_day),
                limit(s.max_connections),
                limit(s.burst),
                if s.require_tls { "required" } else { "-" }.into(),
                Some(changed(s))
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "site",
            "per second",
            "per minute",
            "per hour",
            "per day",
            "connections",
            "burst",
            "tls",
            "changed",
        ],
        rows,
    )
}

pub(super) fn deleted(kind: &str, name: &str, deleted: bool, json: bool) -> String {
    if json {
        return format!(
            "{}\n",
            json!({"kind": kind, "name": name, "deleted": deleted})
        );
    }
    if deleted {
        format!("deleted {kind} {name}\n")
    } else {
        format!("there is no {kind} {name}; nothing changed\n")
    }
}

pub(super) fn suppressions(list: &[Suppression], json: bool) -> String {
    if json {
        return to_json(list.iter().map(suppression_json).collect());
    }
    let rows = list
        .iter()
        .map(|s| {
            vec![
                s.tenant.clone(),
                s.address.clone(),
                s.reason.clone(),
                created(s),
            ]
        })
        .collect();
    table(&["tenant", "address", "reason", "since"], rows)
}

pub(super) fn removed(tenant: &str, address: &str, removed: bool, json: bool) -> String {
    if json {
        return format!(
            "{}\n",
            json!({"tenant": tenant, "address": address, "removed": removed})
        );
    }
    if removed {
        format!("removed {address} from the suppression list of {tenant}\n")
    } else {
        format!("{address} was not on the suppression list of {tenant}; nothing changed\n")
    }
}

/// One line per change: `revision kind name` or a JSON object.
pub(super) fn change(c: &ConfigChange, json: bool) -> String {
    let (kind, value) = match &c.change {
        Some(Change::Pool(p)) => ("pool", pool_json(p)),
        Some(Change::Ip(ip)) => ("ip", ip_json(ip)),
        Some(Change::WarmupPlan(p)) => ("warmup_plan", plan_json(p)),
        Some(Change::SitePolicy(s)) => ("site_policy", site_json(s)),
        Some(Change::Tenant(t)) => ("tenant", tenant_json(t)),
        Some(Change::SuppressionAdded(s)) => ("suppression_added", suppression_json(s)),
        Some(Change::SuppressionRemoved(s)) => ("suppression_removed", suppression_json(s)),
        Some(Change::Provider(p)) => ("provider", provider_json(p)),
        Some(Change::Deleted(d)) => (
            "deleted",
            json!({"kind": kind_name(d.kind), "name": d.name}),
        ),
        None => ("unknown", Value::Null),
    };
    if json {
        return json!({"revision": c.revision, "kind": kind, "record": value}).to_string();
    }
    format!("{:>6}  {kind:<20} {value}", c.revision)
}
