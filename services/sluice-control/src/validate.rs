//! Pure checks of every record a Put receives. Each failure names the field
//! and the reason. References to other records (an IP's pool, ...) are
//! checked by the service against the store.

use std::net::IpAddr;

use sluice_proto::v1::{Pool, SitePolicy, SourceIp, Suppression, Tenant, WarmupPlan};

use crate::ControlError;

/// Longest name of a pool, plan, site, tenant or node.
pub const MAX_NAME: usize = 128;
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
    if p.description.len() > 1024 {
        return Err(invalid("description", "longer than 1024 characters"));
    }
    Ok(())
}

/// A source IP; returns it with its address in canonical form.
pub fn source_ip(ip: &SourceIp) -> Result<SourceIp, ControlError> {
    let addr: IpAddr = ip.address.parse().map_err(|_| {
        invalid(
            "address",
            format!("`{}` is not an IPv4 or IPv6 literal", ip.address),
        )
    })?;
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
    Ok(SourceIp {
        address: addr.to_string(),
        ehlo_name,
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
        previous = step.day;
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
    ] {
        fits_int(field, v)?;
    }
    fits_bigint("messages_per_day", s.messages_per_day)
}

/// A tenant; returns it with its sending domains lower-cased.
pub fn tenant(t: &Tenant) -> Result<Tenant, ControlError> {
    name("name", &t.name)?;
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
    Ok(Tenant {
        sending_domains: domains,
        ..t.clone()
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
    fn warmup_steps_must_increase_with_caps() {
        let step = |day, daily_cap| WarmupStep {
            day,
            daily_cap,
            hourly_cap: 0,
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
    }
}
