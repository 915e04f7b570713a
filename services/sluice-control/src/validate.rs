//! Pure checks of every record a Put receives. Each failure names the field
//! and the reason. References to other records (an IP's pool, ...) are
//! checked by the service against the store.

use std::net::IpAddr;

use sluice_node::secret::SecretHash;
use sluice_proto::v1::{
    DkimKey, ImportSuppressionsRequest, LimitOverrides, Pool, Provider, SitePolicy, SmtpUser,
    SourceIp, Suppression, Tenant, WarmupPlan, WarmupStep,
};

use crate::ControlError;

/// Longest name of a pool, plan, site, tenant or node.
pub const MAX_NAME: usize = 128;
/// Longest free text (descriptions, key references, hashes, ...).
pub const MAX_TEXT: usize = 1024;
/// Most steps of a warm-up plan (a year, day by day).
pub const MAX_PLAN_STEPS: usize = 366;
/// Most sending domains of a tenant.
pub const MAX_SENDING_DOMAINS: usize = 1000;
/// Most API keys of a tenant.
pub const MAX_API_KEYS: usize = 64;
/// Most SMTP users of a tenant.
pub const MAX_SMTP_USERS: usize = 1000;
/// Most DKIM keys of a tenant.
pub const MAX_DKIM_KEYS: usize = 1000;
/// Most sites one source IP or one warm-up day may name.
pub const MAX_SITES: usize = 256;
/// DKIM algorithms a key may name; empty means `rsa-sha256`.
pub const DKIM_ALGORITHMS: &[&str] = &["rsa-sha256", "ed25519-sha256"];
/// Reasons a suppression may carry.
pub const REASONS: &[&str] = &["hard_bounce", "complaint", "unsubscribe", "manual"];

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ControlError {
    ControlError::invalid(field, reason)
}

/// A name: 1–128 characters of letters, digits, `.`, `_` and `-`.
pub fn name(field: &str, value: &str) -> Result<(), ControlError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME {
        return Err(invalid(field, format!("longer than {MAX_NAME} characters")));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(
            field,
            format!("`{c}` is not allowed; use letters, digits, `.`, `_` and `-`"),
        ));
    }
    Ok(())
}

/// A DNS host name with at least two labels, lower-cased.
pub fn domain(field: &str, value: &str) -> Result<String, ControlError> {
    let d = value.to_ascii_lowercase();
    if d.is_empty() || d.len() > 253 {
        return Err(invalid(field, "must be a domain of 1 to 253 characters"));
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.len() < 2 {
        return Err(invalid(
            field,
            format!("`{value}` is not a fully qualified domain"),
        ));
    }
    for label in labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(invalid(field, format!("`{value}` is not a valid domain")));
        }
    }
    Ok(d)
}

/// An email address `local@domain` (no quoted local parts), lower-cased.
pub fn email(field: &str, value: &str) -> Result<String, ControlError> {
    let Some((local, dom)) = value.rsplit_once('@') else {
        return Err(invalid(field, format!("`{value}` has no `@`")));
    };
    let bad_local = local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "@<>()[]\\,;:\"".contains(c));
    if bad_local {
        return Err(invalid(
            field,
            format!("`{value}` has an invalid local part before `@`"),
        ));
    }
    let dom = domain(field, dom)?;
    Ok(format!("{}@{dom}", local.to_lowercase()))
}

fn fits_int(field: &str, v: u32) -> Result<(), ControlError> {
    if i32::try_from(v).is_err() {
        return Err(invalid(field, format!("{v} is above {}", i32::MAX)));
    }
    Ok(())
}

fn fits_bigint(field: &str, v: u64) -> Result<(), ControlError> {
    if i64::try_from(v).is_err() {
        return Err(invalid(field, format!("{v} is above {}", i64::MAX)));
    }
    Ok(())
}

/// A pool.
pub fn pool(p: &Pool) -> Result<(), ControlError> {
    name("name", &p.name)?;
    text("description", &p.description)
}

/// Free text of at most [`MAX_TEXT`] characters.
pub fn text(field: &str, value: &str) -> Result<(), ControlError> {
    if value.chars().count() > MAX_TEXT {
        return Err(invalid(field, format!("longer than {MAX_TEXT} characters")));
    }
    Ok(())
}

fn at_most<T>(field: &str, list: &[T], max: usize) -> Result<(), ControlError> {
    if list.len() > max {
        return Err(invalid(
            field,
            format!("{} entries; at most {max} are allowed", list.len()),
        ));
    }
    Ok(())
}

/// A stored secret as `sluice hash-secret` prints it: `sha256$<salt
/// hex>$<digest hex>`, or (for passwords, `--password`) an Argon2 PHC
/// string. Only the shape is checked; the secret stays unknown.
pub fn secret_hash(field: &str, value: &str) -> Result<(), ControlError> {
    text(field, value)?;
    SecretHash::parse(value).map(drop).map_err(|reason| {
        invalid(
            field,
            format!("{reason}; make one with `printf %s 'secret' | sluice hash-secret`"),
        )
    })
}

/// A DNS label: 1–63 letters, digits and `-`, not starting or ending with `-`.
pub fn label(field: &str, value: &str) -> Result<(), ControlError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && !value.starts_with('-')
        && !value.ends_with('-')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !ok {
        return Err(invalid(
            field,
            format!("`{value}` is not a DNS label (1-63 letters, digits, `-`)"),
        ));
    }
    Ok(())
}

/// An IPv4 or IPv6 literal, in canonical form (`2001:DB8:0::1` →
/// `2001:db8::1`): the key of a source IP.
pub fn ip_address(field: &str, value: &str) -> Result<String, ControlError> {
    let addr: IpAddr = value
        .parse()
        .map_err(|_| invalid(field, format!("`{value}` is not an IPv4 or IPv6 literal")))?;
    Ok(addr.to_string())
}

/// A source IP; returns it with its address in canonical form. `lease` is
/// output only and dropped.
pub fn source_ip(ip: &SourceIp) -> Result<SourceIp, ControlError> {
    let addr = ip_address("address", &ip.address)?;
    name("pool", &ip.pool)?;
    if !ip.owner_node.is_empty() {
        name("owner_node", &ip.owner_node)?;
    }
    if !ip.warmup_plan.is_empty() {
        name("warmup_plan", &ip.warmup_plan)?;
    }
    let ehlo_name = match ip.ehlo_name.as_str() {
        "" => String::new(),
        e => domain("ehlo_name", e)?,
    };
    if let Some(l) = &ip.limits {
        overrides("limits", l)?;
    }
    if ip.site_limits.len() > MAX_SITES {
        return Err(invalid(
            "site_limits",
            format!("{} sites; at most {MAX_SITES}", ip.site_limits.len()),
        ));
    }
    for (site, l) in &ip.site_limits {
        name(&format!("site_limits.{site}"), site)?;
        overrides(&format!("site_limits.{site}"), l)?;
    }
    Ok(SourceIp {
        address: addr,
        ehlo_name,
        lease: None,
        ..ip.clone()
    })
}

/// A warm-up plan: at least one step, days from 1 strictly increasing,
/// non-zero daily caps, hourly caps not above the daily cap.
pub fn warmup_plan(plan: &WarmupPlan) -> Result<(), ControlError> {
    name("name", &plan.name)?;
    if plan.steps.is_empty() {
        return Err(invalid("steps", "needs at least one step"));
    }
    at_most("steps", &plan.steps, MAX_PLAN_STEPS)?;
    let mut previous = 0;
    for (i, step) in plan.steps.iter().enumerate() {
        if step.day == 0 {
            return Err(invalid(format!("steps[{i}].day"), "days start at 1"));
        }
        if step.day <= previous {
            return Err(invalid(
                format!("steps[{i}].day"),
                format!("day {} does not follow day {previous}", step.day),
            ));
        }
        fits_int(&format!("steps[{i}].day"), step.day)?;
        if step.daily_cap == 0 {
            return Err(invalid(format!("steps[{i}].daily_cap"), "must be above 0"));
        }
        fits_bigint(&format!("steps[{i}].daily_cap"), step.daily_cap)?;
        if step.hourly_cap > step.daily_cap {
            return Err(invalid(
                format!("steps[{i}].hourly_cap"),
                "is above the daily cap",
            ));
        }
        site_caps(i, step)?;
        previous = step.day;
    }
    Ok(())
}

/// Limit overrides of a source IP: every value fits its column type.
fn overrides(field: &str, l: &LimitOverrides) -> Result<(), ControlError> {
    for (key, v) in [
        ("messages_per_second", l.messages_per_second),
        ("messages_per_minute", l.messages_per_minute),
        ("messages_per_hour", l.messages_per_hour),
        ("burst", l.burst),
        ("max_connections", l.max_connections),
        ("new_connections_per_minute", l.new_connections_per_minute),
        ("messages_per_connection", l.messages_per_connection),
        ("recipients_per_transaction", l.recipients_per_transaction),
    ] {
        fits_int(&format!("{field}.{key}"), v)?;
    }
    fits_bigint(&format!("{field}.messages_per_day"), l.messages_per_day)
}

/// A warm-up day's per-site caps: valid site names, each cap above zero
/// and within the day's cap.
fn site_caps(i: usize, step: &WarmupStep) -> Result<(), ControlError> {
    if step.site_caps.len() > MAX_SITES {
        return Err(invalid(
            format!("steps[{i}].site_caps"),
            format!("{} sites; at most {MAX_SITES}", step.site_caps.len()),
        ));
    }
    for (site, cap) in &step.site_caps {
        let field = format!("steps[{i}].site_caps.{site}");
        name(&field, site)?;
        if *cap == 0 || *cap > step.daily_cap {
            return Err(invalid(field, "must be above 0 and within the daily cap"));
        }
    }
    Ok(())
}

/// A site policy.
pub fn site_policy(s: &SitePolicy) -> Result<(), ControlError> {
    name("site", &s.site)?;
    for (field, v) in [
        ("messages_per_minute", s.messages_per_minute),
        ("messages_per_hour", s.messages_per_hour),
        ("max_connections", s.max_connections),
        ("new_connections_per_minute", s.new_connections_per_minute),
        ("messages_per_connection", s.messages_per_connection),
        ("recipients_per_transaction", s.recipients_per_transaction),
        ("messages_per_second", s.messages_per_second),
        ("burst", s.burst),
    ] {
        fits_int(field, v)?;
    }
    fits_bigint("messages_per_day", s.messages_per_day)
}

/// A provider (limits shared by the sites of one mailbox provider).
pub fn provider(p: &Provider) -> Result<(), ControlError> {
    name("name", &p.name)?;
    for (field, v) in [
        ("messages_per_minute", p.messages_per_minute),
        ("messages_per_hour", p.messages_per_hour),
        ("max_connections", p.max_connections),
        ("messages_per_second", p.messages_per_second),
        ("burst", p.burst),
    ] {
        fits_int(field, v)?;
    }
    fits_bigint("messages_per_day", p.messages_per_day)
}

/// A tenant; returns it normalized: sending domains lower-cased, sorted and
/// de-duplicated, SMTP users sorted by username, DKIM domains and the
/// bounce domain lower-cased.
pub fn tenant(t: &Tenant) -> Result<Tenant, ControlError> {
    name("name", &t.name)?;
    at_most("sending_domains", &t.sending_domains, MAX_SENDING_DOMAINS)?;
    let mut domains = Vec::with_capacity(t.sending_domains.len());
    for (i, d) in t.sending_domains.iter().enumerate() {
        domains.push(domain(&format!("sending_domains[{i}]"), d)?);
    }
    domains.sort();
    domains.dedup();
    if !t.default_pool.is_empty() {
        name("default_pool", &t.default_pool)?;
    }
    fits_int("rate_quota", t.rate_quota)?;
    at_most("api_key_hashes", &t.api_key_hashes, MAX_API_KEYS)?;
    for (i, h) in t.api_key_hashes.iter().enumerate() {
        secret_hash(&format!("api_key_hashes[{i}]"), h)?;
    }
    let smtp_users = smtp_users(&t.smtp_users)?;
    at_most("dkim_keys", &t.dkim_keys, MAX_DKIM_KEYS)?;
    let dkim_keys = t
        .dkim_keys
        .iter()
        .enumerate()
        .map(|(i, k)| dkim_key(i, k, &domains))
        .collect::<Result<Vec<_>, _>>()?;
    let bounce_domain = match t.bounce_domain.as_str() {
        "" => String::new(),
        d => domain("bounce_domain", d)?,
    };
    let webhooks = crate::validate_webhooks::webhooks(&t.webhooks)?;
    Ok(Tenant {
        sending_domains: domains,
        smtp_users,
        dkim_keys,
        bounce_domain,
        webhooks,
        ..t.clone()
    })
}

fn smtp_users(users: &[SmtpUser]) -> Result<Vec<SmtpUser>, ControlError> {
    at_most("smtp_users", users, MAX_SMTP_USERS)?;
    let mut seen = std::collections::HashSet::new();
    for (i, u) in users.iter().enumerate() {
        let field = format!("smtp_users[{i}].username");
        let n = u.username.chars().count();
        if n == 0 || n > MAX_NAME {
            return Err(invalid(
                field,
                format!("must be 1 to {MAX_NAME} characters"),
            ));
        }
        if u.username
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                field,
                "must not contain spaces or control characters",
            ));
        }
        if !seen.insert(u.username.as_str()) {
            return Err(invalid(
                field,
                format!(
                    "`{}` is given twice; usernames are unique within a tenant",
                    u.username
                ),
            ));
        }
        secret_hash(&format!("smtp_users[{i}].password_hash"), &u.password_hash)?;
    }
    let mut sorted = users.to_vec();
    sorted.sort_by(|a, b| a.username.cmp(&b.username));
    Ok(sorted)
}

fn dkim_key(i: usize, k: &DkimKey, sending_domains: &[String]) -> Result<DkimKey, ControlError> {
    let d = domain(&format!("dkim_keys[{i}].domain"), &k.domain)?;
    if !sending_domains.contains(&d) {
        return Err(invalid(
            format!("dkim_keys[{i}].domain"),
            format!("`{d}` is not one of the tenant's sending_domains"),
        ));
    }
    label(&format!("dkim_keys[{i}].selector"), &k.selector)?;
    if !k.algorithm.is_empty() && !DKIM_ALGORITHMS.contains(&k.algorithm.as_str()) {
        return Err(invalid(
            format!("dkim_keys[{i}].algorithm"),
            format!(
                "`{}` is not one of {} (empty means rsa-sha256)",
                k.algorithm,
                DKIM_ALGORITHMS.join(", ")
            ),
        ));
    }
    let field = format!("dkim_keys[{i}].key_ref");
    if k.key_ref.is_empty() {
        return Err(invalid(field, "must name where nodes find the key"));
    }
    text(&field, &k.key_ref)?;
    Ok(DkimKey {
        domain: d,
        selector: k.selector.to_ascii_lowercase(),
        ..k.clone()
    })
}

/// A suppression; returns it normalized (address lower-cased, reason
/// defaulted to `manual`).
pub fn suppression(s: &Suppression) -> Result<Suppression, ControlError> {
    name("tenant", &s.tenant)?;
    let address = email("address", &s.address)?;
    let reason = if s.reason.is_empty() {
        "manual".to_owned()
    } else if REASONS.contains(&s.reason.as_str()) {
        s.reason.clone()
    } else {
        return Err(invalid(
            "reason",
            format!("`{}` is not one of {}", s.reason, REASONS.join(", ")),
        ));
    };
    Ok(Suppression {
        address,
        reason,
        ..s.clone()
    })
}

/// Most entries one `ImportSuppressions` call may carry.
pub const MAX_IMPORT: usize = 10_000;

/// An import's entries, each normalized as [`suppression`] does, stamped
/// `now` when they carry no time, one per address (the last wins). Fails
/// on the first bad entry, naming it by its index.
pub fn import(
    request: &ImportSuppressionsRequest,
    now: std::time::SystemTime,
) -> Result<Vec<Suppression>, ControlError> {
    name("tenant", &request.tenant)?;
    if request.suppressions.len() > MAX_IMPORT {
        return Err(invalid(
            "suppressions",
            format!(
                "{} entries; at most {MAX_IMPORT} per call (split the import)",
                request.suppressions.len()
            ),
        ));
    }
    let mut by_address = std::collections::BTreeMap::new();
    for (i, entry) in request.suppressions.iter().enumerate() {
        let at = |e: ControlError| match e {
            ControlError::InvalidArgument { field, reason } => {
                invalid(format!("suppressions[{i}].{field}"), reason)
            }
            other => other,
        };
        if !entry.tenant.is_empty() && entry.tenant != request.tenant {
            let reason = format!(
                "`{}` differs from the request's `{}`",
                entry.tenant, request.tenant
            );
            return Err(invalid(format!("suppressions[{i}].tenant"), reason));
        }
        let mut s = suppression(&Suppression {
            tenant: request.tenant.clone(),
            ..entry.clone()
        })
        .map_err(at)?;
        s.created_at
            .get_or_insert_with(|| prost_types::Timestamp::from(now));
        by_address.insert(s.address.clone(), s);
    }
    Ok(by_address.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::v1::WarmupStep;

    fn field(r: Result<impl std::fmt::Debug, ControlError>) -> String {
        match r {
            Err(ControlError::InvalidArgument { field, .. }) => field,
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn names_and_addresses() {
        assert!(name("name", "pool-a.1_b").is_ok());
        assert_eq!(field(name("name", "")), "name");
        assert_eq!(field(name("name", "a b")), "name");
        assert_eq!(email("a", "Bob@Example.COM").unwrap(), "bob@example.com");
        for bad in [
            "bob",
            "@example.com",
            "bob@",
            "bob@localhost",
            "a b@x.com",
            "b@-x.com",
        ] {
            assert_eq!(field(email("address", bad)), "address", "{bad}");
        }
    }

    #[test]
    fn ips_are_canonical() {
        let ip = SourceIp {
            address: "2001:DB8:0:0::1".into(),
            pool: "p".into(),
            ..Default::default()
        };
        assert_eq!(source_ip(&ip).unwrap().address, "2001:db8::1");
        let bad = SourceIp {
            address: "192.0.2.300".into(),
            ..ip.clone()
        };
        assert_eq!(field(source_ip(&bad)), "address");
    }

    #[test]
    fn tenant_credentials_and_keys_are_checked() {
        let hash = sluice_node::secret::hash_secret("k");
        let good = Tenant {
            name: "acme".into(),
            sending_domains: vec!["Example.com".into()],
            api_key_hashes: vec![hash.clone()],
            smtp_users: vec![
                SmtpUser {
                    username: "z".into(),
                    password_hash: hash.clone(),
                },
                SmtpUser {
                    username: "a".into(),
                    password_hash: hash.clone(),
                },
            ],
            dkim_keys: vec![DkimKey {
                domain: "EXAMPLE.com".into(),
                selector: "s1".into(),
                algorithm: String::new(),
                key_ref: "/keys/s1.pem".into(),
            }],
            bounce_domain: "Bounce.Example.com".into(),
            ..Default::default()
        };
        let t = tenant(&good).expect("valid");
        assert_eq!(t.smtp_users[0].username, "a");
        assert_eq!(t.dkim_keys[0].domain, "example.com");
        assert_eq!(t.bounce_domain, "bounce.example.com");
        let with = |f: &dyn Fn(&mut Tenant)| {
            let mut t = good.clone();
            f(&mut t);
            field(tenant(&t))
        };
        assert_eq!(
            with(&|t| t.api_key_hashes[0] = "plain".into()),
            "api_key_hashes[0]"
        );
        assert_eq!(
            with(&|t| t.api_key_hashes = vec![hash.clone(); 65]),
            "api_key_hashes"
        );
        assert_eq!(
            with(&|t| t.smtp_users[1].username = "z".into()),
            "smtp_users[1].username"
        );
        assert_eq!(
            with(&|t| t.smtp_users[0].password_hash = "x".into()),
            "smtp_users[0].password_hash"
        );
        assert_eq!(
            with(&|t| t.dkim_keys[0].domain = "other.com".into()),
            "dkim_keys[0].domain"
        );
        assert_eq!(
            with(&|t| t.dkim_keys[0].selector = "a.b".into()),
            "dkim_keys[0].selector"
        );
        assert_eq!(
            with(&|t| t.dkim_keys[0].algorithm = "md5".into()),
            "dkim_keys[0].algorithm"
        );
        assert_eq!(
            with(&|t| t.dkim_keys[0].key_ref = String::new()),
            "dkim_keys[0].key_ref"
        );
        assert_eq!(
            with(&|t| t.dkim_keys[0].key_ref = "x".repeat(1025)),
            "dkim_keys[0].key_ref"
        );
        assert_eq!(with(&|t| t.bounce_domain = "nodot".into()), "bounce_domain");
        assert_eq!(
            with(&|t| t.sending_domains = vec!["a.example.com".into(); 1001]),
            "sending_domains"
        );
    }

    #[test]
    fn warmup_steps_must_increase_with_caps() {
        let step = |day, daily_cap| WarmupStep {
            day,
            daily_cap,
            ..WarmupStep::default()
        };
        let plan = |steps| WarmupPlan {
            name: "w".into(),
            steps,
        };
        assert!(warmup_plan(&plan(vec![step(1, 50), step(2, 100)])).is_ok());
        assert_eq!(field(warmup_plan(&plan(vec![]))), "steps");
        assert_eq!(
            field(warmup_plan(&plan(vec![step(2, 50), step(2, 100)]))),
            "steps[1].day"
        );
        assert_eq!(
            field(warmup_plan(&plan(vec![step(1, 0)]))),
            "steps[0].daily_cap"
        );
        let year: Vec<WarmupStep> = (1..=367).map(|d| step(d, 10)).collect();
        assert_eq!(field(warmup_plan(&plan(year[..367].to_vec()))), "steps");
        assert!(warmup_plan(&plan(year[..366].to_vec())).is_ok());
        let mut capped = step(1, 50);
        capped.site_caps.insert("gmail".into(), 20);
        assert!(warmup_plan(&plan(vec![capped.clone()])).is_ok());
        capped.site_caps.insert("yahoo".into(), 51);
        assert_eq!(
            field(warmup_plan(&plan(vec![capped]))),
            "steps[0].site_caps.yahoo"
        );
    }

    #[test]
    fn ip_limit_overrides_are_checked_per_field() {
        let ip = |limits: LimitOverrides| SourceIp {
            address: "192.0.2.1".into(),
            pool: "p".into(),
            site_limits: [("gmail".to_owned(), limits)].into(),
            ..Default::default()
        };
        let ok = LimitOverrides {
            burst: 5,
            ..Default::default()
        };
        assert!(source_ip(&ip(ok)).is_ok());
        let big = LimitOverrides {
            burst: u32::MAX,
            ..Default::default()
        };
        assert_eq!(field(source_ip(&ip(big))), "site_limits.gmail.burst");
    }
}
