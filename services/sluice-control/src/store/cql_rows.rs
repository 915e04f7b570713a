//! Conversions between the rows of control's CQL tables and the protobuf
//! records. The tables are defined by the migrations of crate `sluice-cql`.

use scylla::value::{CqlTimestamp, CqlValue};
use std::collections::BTreeMap;

use prost::Message;
use sluice_proto::v1::{
    DkimKey, LimitOverrides, Pool, Provider, SitePolicy, SmtpUser, SourceIp, Suppression, Tenant,
    WarmupStep, Webhook,
};

use crate::ControlError;

/// Rows per partition of the change log (`config_changes`).
pub(super) const CHANGES_PER_BUCKET: u64 = 10_000;

pub(super) fn int(v: u32) -> CqlValue {
    CqlValue::Int(i32::try_from(v).unwrap_or(i32::MAX))
}

pub(super) fn big(v: u64) -> CqlValue {
    CqlValue::BigInt(i64::try_from(v).unwrap_or(i64::MAX))
}

pub(super) fn text(v: &str) -> CqlValue {
    CqlValue::Text(v.to_owned())
}

fn unsigned(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

fn unsigned64(v: Option<i64>) -> u64 {
    v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

pub(super) fn timestamp_millis(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
        .unwrap_or(0)
}

pub(super) fn timestamp(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// Values of `config_pools` in column order (without revision).
pub(super) fn pool_values(p: &Pool) -> Vec<CqlValue> {
    vec![text(&p.name), text(&p.description)]
}

pub(super) type PoolRow = (String, Option<String>);

pub(super) fn pool_from(row: PoolRow) -> Pool {
    Pool {
        name: row.0,
        description: row.1.unwrap_or_default(),
    }
}

pub(super) fn ip_values(ip: &SourceIp) -> Vec<CqlValue> {
    vec![
        text(&ip.address),
        text(&ip.pool),
        text(&ip.owner_node),
        text(&ip.warmup_plan),
        text(&ip.ehlo_name),
        CqlValue::Boolean(ip.paused),
        CqlValue::Blob(
            ip.limits
                .as_ref()
                .map(Message::encode_to_vec)
                .unwrap_or_default(),
        ),
        CqlValue::Map(
            ip.site_limits
                .iter()
                .map(|(site, l)| (text(site), CqlValue::Blob(l.encode_to_vec())))
                .collect(),
        ),
    ]
}

pub(super) type IpRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<Vec<u8>>,
    Option<BTreeMap<String, Vec<u8>>>,
);

/// A stored `LimitOverrides`; empty or undecodable bytes are none (the
/// record was written by validated code, so only an empty blob is expected).
fn overrides(bytes: &[u8]) -> Option<LimitOverrides> {
    if bytes.is_empty() {
        return None;
    }
    LimitOverrides::decode(bytes).ok()
}

pub(super) fn ip_from(row: IpRow) -> SourceIp {
    SourceIp {
        address: row.0,
        pool: row.1.unwrap_or_default(),
        owner_node: row.2.unwrap_or_default(),
        warmup_plan: row.3.unwrap_or_default(),
        ehlo_name: row.4.unwrap_or_default(),
        paused: row.5.unwrap_or(false),
        lease: None,
        limits: row.6.as_deref().and_then(overrides),
        site_limits: row
            .7
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(site, bytes)| Some((site, overrides(&bytes)?)))
            .collect(),
    }
}

pub(super) fn step_values(plan: &str, step: &WarmupStep) -> Vec<CqlValue> {
    vec![
        text(plan),
        int(step.day),
        big(step.daily_cap),
        big(step.hourly_cap),
        CqlValue::Map(
            step.site_caps
                .iter()
                .map(|(site, cap)| (text(site), big(*cap)))
                .collect(),
        ),
    ]
}

pub(super) type StepRow = (
    String,
    i32,
    Option<i64>,
    Option<i64>,
    Option<BTreeMap<String, i64>>,
);

pub(super) fn step_from(row: &StepRow) -> WarmupStep {
    WarmupStep {
        day: unsigned(Some(row.1)),
        daily_cap: unsigned64(row.2),
        hourly_cap: unsigned64(row.3),
        site_caps: row
            .4
            .iter()
            .flatten()
            .map(|(site, cap)| (site.clone(), unsigned64(Some(*cap))))
            .collect(),
    }
}

pub(super) fn site_values(s: &SitePolicy) -> Vec<CqlValue> {
    vec![
        text(&s.site),
        int(s.messages_per_minute),
        int(s.messages_per_hour),
        big(s.messages_per_day),
        int(s.max_connections),
        int(s.new_connections_per_minute),
        int(s.messages_per_connection),
        int(s.recipients_per_transaction),
        CqlValue::Boolean(s.require_tls),
        int(s.messages_per_second),
        int(s.burst),
        // 0 (the epoch) stands for "never stamped".
        CqlValue::Timestamp(CqlTimestamp(timestamp_millis(s.changed_at.as_ref()))),
    ]
}

pub(super) type SiteRow = (
    String,
    Option<i32>,
    Option<i32>,
    Option<i64>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<bool>,
    Option<i32>,
    Option<i32>,
    Option<CqlTimestamp>,
);

pub(super) fn site_from(r: SiteRow) -> SitePolicy {
    SitePolicy {
        site: r.0,
        messages_per_minute: unsigned(r.1),
        messages_per_hour: unsigned(r.2),
        messages_per_day: unsigned64(r.3),
        max_connections: unsigned(r.4),
        new_connections_per_minute: unsigned(r.5),
        messages_per_connection: unsigned(r.6),
        recipients_per_transaction: unsigned(r.7),
        require_tls: r.8.unwrap_or(false),
        messages_per_second: unsigned(r.9),
        burst: unsigned(r.10),
        changed_at: r.11.filter(|t| t.0 != 0).map(|t| timestamp(t.0)),
    }
}

pub(super) fn tenant_values(t: &Tenant) -> Vec<CqlValue> {
    vec![
        text(&t.name),
        CqlValue::Set(t.sending_domains.iter().map(|d| text(d)).collect()),
        text(&t.default_pool),
        int(t.rate_quota),
        CqlValue::Boolean(t.paused),
        CqlValue::List(t.api_key_hashes.iter().map(|h| text(h)).collect()),
        CqlValue::Map(
            t.smtp_users
                .iter()
                .map(|u| (text(&u.username), text(&u.password_hash)))
                .collect(),
        ),
        CqlValue::List(t.dkim_keys.iter().map(|k| text(&dkim_text(k))).collect()),
        text(&t.bounce_domain),
        CqlValue::Boolean(t.trace),
        CqlValue::List(
            t.webhooks
                .iter()
                .map(|w| CqlValue::Blob(w.encode_to_vec()))
                .collect(),
        ),
        CqlValue::Boolean(t.smtp_dsn),
        CqlValue::Boolean(t.tracking),
    ]
}

/// A DKIM key as one text of `config_tenants.dkim_keys`: `domain selector
/// algorithm key_ref`, single spaces. Domain, selector and algorithm hold no
/// space (validation), so the key reference is the rest of the text.
pub(super) fn dkim_text(k: &DkimKey) -> String {
    format!("{} {} {} {}", k.domain, k.selector, k.algorithm, k.key_ref)
}

/// The inverse of [`dkim_text`].
pub(super) fn dkim_from(stored: &str) -> DkimKey {
    let mut parts = stored.splitn(4, ' ');
    let mut next = || parts.next().unwrap_or_default().to_owned();
    DkimKey {
        domain: next(),
        selector: next(),
        algorithm: next(),
        key_ref: next(),
    }
}

pub(super) type TenantRow = (
    String,
    Option<Vec<String>>,
    Option<String>,
    Option<i32>,
    Option<bool>,
    Option<Vec<String>>,
    Option<BTreeMap<String, String>>,
    Option<Vec<String>>,
    Option<String>,
    Option<bool>,
    Option<Vec<Vec<u8>>>,
    Option<bool>,
    Option<bool>,
);

pub(super) fn tenant_from(r: TenantRow) -> Result<Tenant, ControlError> {
    Ok(Tenant {
        name: r.0,
        sending_domains: r.1.unwrap_or_default(),
        default_pool: r.2.unwrap_or_default(),
        rate_quota: unsigned(r.3),
        paused: r.4.unwrap_or(false),
        api_key_hashes: r.5.unwrap_or_default(),
        smtp_users: r
            .6
            .unwrap_or_default()
            .into_iter()
            .map(|(username, password_hash)| SmtpUser {
                username,
                password_hash,
            })
            .collect(),
        dkim_keys: r
            .7
            .unwrap_or_default()
            .iter()
            .map(|k| dkim_from(k))
            .collect(),
        bounce_domain: r.8.unwrap_or_default(),
        trace: r.9.unwrap_or(false),
        webhooks: r
            .10
            .unwrap_or_default()
            .iter()
            .map(|b| Webhook::decode(b.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|e| ControlError::Corrupt(format!("config_tenants.webhooks: {e}")))?,
        smtp_dsn: r.11.unwrap_or(false),
        tracking: r.12.unwrap_or(false),
    })
}

pub(super) fn provider_values(p: &Provider) -> Vec<CqlValue> {
    vec![
        text(&p.name),
        int(p.messages_per_minute),
        int(p.messages_per_hour),
        big(p.messages_per_day),
        int(p.max_connections),
        int(p.messages_per_second),
        int(p.burst),
    ]
}

pub(super) type ProviderRow = (
    String,
    Option<i32>,
    Option<i32>,
    Option<i64>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
);

pub(super) fn provider_from(r: ProviderRow) -> Provider {
    Provider {
        name: r.0,
        messages_per_minute: unsigned(r.1),
        messages_per_hour: unsigned(r.2),
        messages_per_day: unsigned64(r.3),
        max_connections: unsigned(r.4),
        messages_per_second: unsigned(r.5),
        burst: unsigned(r.6),
    }
}

/// A row of the sender's `ip_leases`: ip, owner, epoch, expires.
pub(super) type LeaseRow = (String, Option<String>, Option<i64>, Option<CqlTimestamp>);

pub(super) type SuppressionRow = (String, String, Option<String>, Option<CqlTimestamp>);

pub(super) fn suppression_from(r: SuppressionRow) -> Suppression {
    Suppression {
        tenant: r.0,
        address: r.1,
        reason: r.2.unwrap_or_default(),
        created_at: r.3.map(|t| timestamp(t.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_to_the_millisecond() {
        let t = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_000_000,
        };
        assert_eq!(timestamp(timestamp_millis(Some(&t))), t);
        assert_eq!(timestamp_millis(None), 0);
    }

    #[test]
    fn dkim_keys_round_trip_through_their_text() {
        let k = DkimKey {
            domain: "example.com".into(),
            selector: "s1".into(),
            algorithm: String::new(),
            key_ref: "/etc/keys/with space.pem".into(),
        };
        assert_eq!(dkim_from(&dkim_text(&k)), k);
        let k = DkimKey {
            algorithm: "ed25519-sha256".into(),
            ..k
        };
        assert_eq!(dkim_from(&dkim_text(&k)), k);
    }

    #[test]
    fn values_are_clamped_to_cql_ranges() {
        assert_eq!(int(u32::MAX), CqlValue::Int(i32::MAX));
        assert_eq!(big(u64::MAX), CqlValue::BigInt(i64::MAX));
    }
}
