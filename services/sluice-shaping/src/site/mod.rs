//! Sites: rolling recipient domains up by their MX hosts.

mod builtin;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
pub use builtin::BUILTIN_SITE_RULES;

/// A site: the set of receiving MX hosts that shares one set of limits and one reputation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Site {
    /// Site name, for example `google`, `outlook`, `mx:mx1.example.net,mx2.example.net`.
    pub name: String,
    /// The provider the site belongs to, if a rule named one.
    pub provider: Option<String>,
}

impl Site {
    /// A site with a name and an optional provider.
    pub fn new(name: impl Into<String>, provider: Option<&str>) -> Site {
        Site {
            name: name.into(),
            provider: provider.map(str::to_owned),
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// One MX rollup rule.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRule {
    /// MX host pattern: `*.example.net` matches every host below `example.net` (not
    /// `example.net` itself); a pattern without `*` matches one host exactly.
    pub pattern: String,
    /// Site the matching domains belong to.
    pub site: String,
    /// Provider of the site; provider-wide limits and reply rules use it.
    #[serde(default)]
    pub provider: Option<String>,
}

/// MX rollup configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SitesConfig {
    /// Include the built-in rules for the large mailbox providers. Default `true`.
    #[serde(default = "yes")]
    pub builtin_rules: bool,
    /// Extra rules. A rule with the same pattern as a built-in one replaces it; otherwise
    /// the most specific (longest) matching pattern wins.
    #[serde(default)]
    pub rules: Vec<SiteRule>,
}

fn yes() -> bool {
    true
}

impl Default for SitesConfig {
    fn default() -> SitesConfig {
        SitesConfig {
            builtin_rules: true,
            rules: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
struct CompiledRule {
    /// `.example.net` for a wildcard, `mx.example.net` for an exact pattern.
    suffix: String,
    wildcard: bool,
    site: Site,
}

impl CompiledRule {
    fn new(pattern: &str, site: &str, provider: Option<&str>) -> Result<CompiledRule, ConfigError> {
        let p = normalize(pattern);
        let (suffix, wildcard) = match p.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && rest.len() > 1 => (rest.to_owned(), true),
            Some(_) => {
                return Err(ConfigError::new(
                    "sites.rules.pattern",
                    format!("`{pattern}` must be `*.suffix` or a host name"),
                ));
            }
            None => (p, false),
        };
        if suffix.contains('*') || suffix.is_empty() {
            return Err(ConfigError::new(
                "sites.rules.pattern",
                format!("`{pattern}` has a `*` that is not a leading `*.`"),
            ));
        }
        Ok(CompiledRule {
            suffix,
            wildcard,
            site: Site::new(site, provider),
        })
    }

    fn matches(&self, host: &str) -> bool {
        if self.wildcard {
            host.ends_with(&self.suffix)
        } else {
            host == self.suffix
        }
    }
}

/// Maps a domain's MX hosts to its site.
#[derive(Clone, Debug)]
pub struct SiteResolver {
    rules: Vec<CompiledRule>,
}

impl SiteResolver {
    /// Compiles the rules: configured rules first, then the built-in ones whose pattern no
    /// configured rule repeats; then sorted most specific first (stable).
    pub fn new(cfg: &SitesConfig) -> Result<SiteResolver, ConfigError> {
        let mut rules = Vec::new();
        for r in &cfg.rules {
            rules.push(CompiledRule::new(
                &r.pattern,
                &r.site,
                r.provider.as_deref(),
            )?);
        }
        if cfg.builtin_rules {
            for &(pattern, site, provider) in BUILTIN_SITE_RULES {
                let rule = CompiledRule::new(pattern, site, Some(provider))?;
                if !rules
                    .iter()
                    .any(|r: &CompiledRule| r.suffix == rule.suffix && r.wildcard == rule.wildcard)
                {
                    rules.push(rule);
                }
            }
        }
        rules.sort_by_key(|r| std::cmp::Reverse(r.suffix.len()));
        Ok(SiteResolver { rules })
    }

    /// The site of `domain` given its MX host names in preference order (as resolved by
    /// the caller). The most preferred host that matches a rule decides; when none matches,
    /// domains with the same MX set share a site named `mx:` + the sorted, comma-joined
    /// hosts; a domain without MX hosts is its own site.
    pub fn resolve(&self, domain: &str, mx_hosts: &[&str]) -> Site {
        let hosts: Vec<String> = mx_hosts
            .iter()
            .map(|h| normalize(h))
            .filter(|h| !h.is_empty())
            .collect();
        for host in &hosts {
            if let Some(rule) = self.rules.iter().find(|r| r.matches(host)) {
                return rule.site.clone();
            }
        }
        if hosts.is_empty() {
            return Site::new(normalize(domain), None);
        }
        let mut sorted = hosts;
        sorted.sort();
        sorted.dedup();
        Site::new(format!("mx:{}", sorted.join(",")), None)
    }
}

fn normalize(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests;
