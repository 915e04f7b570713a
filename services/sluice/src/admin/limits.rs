//! `sluice admin` arguments for per-IP limit overrides and per-site warm-up
//! caps: `--limit messages_per_minute=600`, `--site-limit gmail:burst=5`,
//! `--site-cap 1:gmail=20`. Errors name the argument and what is wrong.

use std::collections::HashMap;

use anyhow::{Context, bail};
use sluice_proto::v1::{LimitOverrides, WarmupStep};

/// The limit names `--limit` and `--site-limit` take.
pub const NAMES: &str = "messages_per_second, messages_per_minute, messages_per_hour, \
     messages_per_day, burst, max_connections, new_connections_per_minute, \
     messages_per_connection, recipients_per_transaction";

/// Sets one `name=value` on `l`.
fn set(l: &mut LimitOverrides, arg: &str) -> anyhow::Result<()> {
    let (name, value) = arg
        .split_once('=')
        .with_context(|| format!("`{arg}`: expected name=value (names: {NAMES})"))?;
    let number: u64 = value
        .trim()
        .parse()
        .with_context(|| format!("`{arg}`: {value:?} is not a whole number"))?;
    let small = || u32::try_from(number).with_context(|| format!("`{arg}`: at most {}", u32::MAX));
    match name.trim() {
        "messages_per_second" => l.messages_per_second = small()?,
        "messages_per_minute" => l.messages_per_minute = small()?,
        "messages_per_hour" => l.messages_per_hour = small()?,
        "messages_per_day" => l.messages_per_day = number,
        "burst" => l.burst = small()?,
        "max_connections" => l.max_connections = small()?,
        "new_connections_per_minute" => l.new_connections_per_minute = small()?,
        "messages_per_connection" => l.messages_per_connection = small()?,
        "recipients_per_transaction" => l.recipients_per_transaction = small()?,
        other => bail!("`{arg}`: unknown limit {other:?} (names: {NAMES})"),
    }
    Ok(())
}

/// `--limit` arguments as the IP's overrides (`None` when there are none).
pub fn ip_limits(args: &[String]) -> anyhow::Result<Option<LimitOverrides>> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut l = LimitOverrides::default();
    for arg in args {
        set(&mut l, arg).context("--limit")?;
    }
    Ok(Some(l))
}

/// `--site-limit site:name=value` arguments, by site.
pub fn site_limits(args: &[String]) -> anyhow::Result<HashMap<String, LimitOverrides>> {
    let mut out: HashMap<String, LimitOverrides> = HashMap::new();
    for arg in args {
        let (site, limit) = arg
            .split_once(':')
            .with_context(|| format!("--site-limit `{arg}`: expected site:name=value"))?;
        set(out.entry(site.trim().to_owned()).or_default(), limit).context("--site-limit")?;
    }
    Ok(out)
}

/// Adds `--site-cap day:site=cap` arguments to `steps` (days from 1).
pub fn add_site_caps(steps: &mut [WarmupStep], args: &[String]) -> anyhow::Result<()> {
    for arg in args {
        let bad = || format!("--site-cap `{arg}`: expected day:site=cap, e.g. 1:gmail=20");
        let (day, rest) = arg.split_once(':').with_context(bad)?;
        let (site, cap) = rest.split_once('=').with_context(bad)?;
        let day: usize = day.trim().parse().with_context(bad)?;
        let cap: u64 = cap.trim().parse().with_context(bad)?;
        let step = day
            .checked_sub(1)
            .and_then(|i| steps.get_mut(i))
            .with_context(|| format!("--site-cap `{arg}`: the plan has no day {day}"))?;
        step.site_caps.insert(site.trim().to_owned(), cap);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn limits_parse_by_name_and_errors_name_the_argument() {
        let l = ip_limits(&strings(&["messages_per_minute=600", "burst = 5"]))
            .expect("parses")
            .expect("some");
        assert_eq!((l.messages_per_minute, l.burst), (600, 5));
        assert_eq!(ip_limits(&[]).expect("none"), None);
        let err = format!("{:#}", ip_limits(&strings(&["speed=3"])).unwrap_err());
        assert!(
            err.contains("--limit") && err.contains("unknown limit"),
            "{err}"
        );
        let err = format!("{:#}", ip_limits(&strings(&["burst=x"])).unwrap_err());
        assert!(err.contains("not a whole number"), "{err}");

        let sites =
            site_limits(&strings(&["gmail:burst=3", "gmail:max_connections=2"])).expect("parses");
        assert_eq!(
            (sites["gmail"].burst, sites["gmail"].max_connections),
            (3, 2)
        );
        assert!(site_limits(&strings(&["burst=3"])).is_err());
    }

    #[test]
    fn site_caps_go_to_their_day() {
        let mut steps: Vec<WarmupStep> = (1..=2)
            .map(|day| WarmupStep {
                day,
                daily_cap: 100,
                ..Default::default()
            })
            .collect();
        add_site_caps(&mut steps, &strings(&["2:gmail=40"])).expect("parses");
        assert!(steps[0].site_caps.is_empty());
        assert_eq!(steps[1].site_caps["gmail"], 40);
        let err = add_site_caps(&mut steps, &strings(&["3:gmail=1"])).unwrap_err();
        assert!(err.to_string().contains("no day 3"), "{err}");
    }
}
