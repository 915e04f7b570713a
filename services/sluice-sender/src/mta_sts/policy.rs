//! MTA-STS (RFC 8461) text formats, pure: the policy body served at
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt` (§3.2), the
//! `_mta-sts.<domain>` TXT record (§3.1), and MX host matching (§4.1).

/// Largest policy body read (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// Largest `max_age` a policy may set, in seconds (RFC 8461 §3.2).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// What a policy asks of senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts with a verified certificate.
    Enforce,
    /// Deliver as usual; report (here: log) what enforcing would refuse.
    Testing,
    /// No policy (published to withdraw an earlier one).
    None,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns, lower case, without a trailing dot.
    pub mx: Vec<String>,
    /// Seconds the policy may be cached.
    pub max_age: u64,
}

/// Why a policy body or TXT record is not valid; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MTA-STS {field}: {reason}")]
pub struct PolicyError {
    pub field: &'static str,
    pub reason: String,
}

fn error(field: &'static str, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        field,
        reason: reason.into(),
    }
}

impl Policy {
    /// Whether `host` (an MX name) matches one of the policy's patterns.
    pub fn matches(&self, host: &str) -> bool {
        self.mx.iter().any(|pattern| mx_matches(pattern, host))
    }
}

/// Parses a policy body: `key: value` lines (CRLF or LF) in any order:
/// `version: STSv1`, `mode`, `max_age` and one or more `mx`.
/// Unknown keys are ignored; of a repeated key other than `mx` the first
/// counts (§3.2). A `mode: none` policy may leave `mx` out.
pub fn parse_policy(body: &[u8]) -> Result<Policy, PolicyError> {
    if body.len() > MAX_BODY {
        return Err(error("body", format!("longer than {MAX_BODY} bytes")));
    }
    let text = std::str::from_utf8(body).map_err(|_| error("body", "not UTF-8 text"))?;
    let mut fields = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| error("body", format!("line {} is not `key: value`", n + 1)))?;
        fields.push((key.trim(), value.trim_matches([' ', '\t'])));
    }
    let first = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    // RFC 8461 §3.2 orders the TXT record's fields, not the policy's.
    match first("version") {
        Some("STSv1") => {}
        Some(other) => return Err(error("version", format!("`{other}` is not STSv1"))),
        None => return Err(error("version", "missing (`version: STSv1`)")),
    }
    let mode = parse_mode(first("mode"))?;
    let max_age = parse_max_age(first("max_age"))?;
    let mx = fields
        .iter()
        .filter(|(k, _)| *k == "mx")
        .map(|(_, v)| parse_mx(v))
        .collect::<Result<Vec<_>, _>>()?;
    if mx.is_empty() && mode != Mode::None {
        return Err(error(
            "mx",
            "missing: a policy names at least one MX pattern",
        ));
    }
    Ok(Policy { mode, mx, max_age })
}

fn parse_mode(value: Option<&str>) -> Result<Mode, PolicyError> {
    match value {
        Some("enforce") => Ok(Mode::Enforce),
        Some("testing") => Ok(Mode::Testing),
        Some("none") => Ok(Mode::None),
        Some(other) => Err(error(
            "mode",
            format!("`{other}` is not enforce, testing or none"),
        )),
        None => Err(error("mode", "missing")),
    }
}

fn parse_max_age(value: Option<&str>) -> Result<u64, PolicyError> {
    let value = value.ok_or_else(|| error("max_age", "missing"))?;
    let digits =
        !value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit());
    let seconds = value
        .parse::<u64>()
        .ok()
        .filter(|_| digits)
        .ok_or_else(|| error("max_age", format!("`{value}` is not a number of seconds")))?;
    if seconds > MAX_AGE_LIMIT {
        return Err(error(
            "max_age",
            format!("{seconds} is above the limit of {MAX_AGE_LIMIT} seconds"),
        ));
    }
    Ok(seconds)
}

/// An MX pattern: a host name, or `*.` and a host name.
fn parse_mx(value: &str) -> Result<String, PolicyError> {
    let pattern = value.trim_end_matches('.').to_ascii_lowercase();
    let name = pattern.strip_prefix("*.").unwrap_or(&pattern);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(error("mx", format!("`{value}` is not a host name pattern")));
    }
    Ok(pattern)
}

/// Whether `host` matches `pattern` (§4.1): equal ignoring case and a
/// trailing dot, or `*.rest` where `host` is exactly one label before `rest`.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(parent)),
        None => !host.is_empty() && host.eq_ignore_ascii_case(pattern),
    }
}

/// The policy id of a domain's `_mta-sts` TXT records (§3.1): of the
/// records, those that start with `v=STSv1;` count; exactly one must, and
/// it must carry an `id` of 1 to 32 letters and digits. Each record is its
/// strings joined. `Ok(None)`: no record starts with `v=STSv1`.
pub fn txt_policy_id(records: &[String]) -> Result<Option<String>, PolicyError> {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| {
            r.strip_prefix("v=STSv1")
                .is_some_and(|rest| rest.trim_start_matches([' ', '\t']).starts_with(';'))
        })
        .collect();
    let record = match sts.as_slice() {
        [] => return Ok(None),
        [one] => one,
        _ => return Err(error("TXT record", "more than one `v=STSv1` record")),
    };
    let id = record
        .split(';')
        .skip(1)
        .filter_map(|field| field.trim_matches([' ', '\t']).split_once('='))
        .find(|(key, _)| *key == "id")
        .map(|(_, value)| value)
        .ok_or_else(|| error("TXT record", "no `id` field"))?;
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(error(
            "TXT record",
            format!("id `{id}` is not 1 to 32 letters and digits"),
        ));
    }
    Ok(Some(id.to_owned()))
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
