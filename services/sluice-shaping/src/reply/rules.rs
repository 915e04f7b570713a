//! Reply rules: regular expressions on code, enhanced code and text, mapped to actions.

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::Reply;
use crate::classify::BounceClass;
use crate::error::ConfigError;
use crate::time::Span;

/// What a matching reply does to the message and to its egress path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Retry the message later; the path is untouched.
    Retry,
    /// Retry the message later and cut the path's rate (multiplicative decrease).
    Slow,
    /// Retry later; stop the path (pool, IP, site) for `duration`, and cut its rate.
    SuspendPath,
    /// Retry later; stop every path of the source IP for `duration`, and cut this path's rate.
    SuspendIp,
    /// Give the message up now (bounce) whatever the reply code.
    Bounce,
}

/// One reply rule. All matchers that are set must match; a rule with none matches nothing.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyRule {
    /// Name reported with the action (for logs and metrics), e.g. `gmail-4.7.28`.
    pub name: String,
    /// Only replies on sites of this provider match; unset matches every provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Regex on the three-digit basic code, e.g. `^421$`.
    #[serde(default)]
    pub code: Option<String>,
    /// Regex on the enhanced code written `class.subject.detail`, e.g. `^4\.7\.28$`.
    #[serde(default)]
    pub enhanced: Option<String>,
    /// Regex on the reply text, e.g. `(?i)too many connections`.
    #[serde(default)]
    pub text: Option<String>,
    /// What to do.
    pub action: RuleAction,
    /// How long a `suspend_path` / `suspend_ip` lasts; default `backoff.default_suspension`.
    #[serde(default)]
    pub duration: Option<Span>,
    /// Do not retry the message sooner than this (e.g. greylisting). Default: no minimum.
    #[serde(default)]
    pub retry_after: Option<Span>,
    /// Override the bounce class the classifier would give the reply.
    #[serde(default)]
    pub class: Option<BounceClass>,
}

/// Reply rule configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepliesConfig {
    /// Append the built-in rules (Gmail, Yahoo, Microsoft, connections, greylisting).
    /// Default `true`.
    #[serde(default = "yes")]
    pub builtin_rules: bool,
    /// Rules checked in order before the built-in ones; the first match wins.
    #[serde(default)]
    pub rules: Vec<ReplyRule>,
}

fn yes() -> bool {
    true
}

impl Default for RepliesConfig {
    fn default() -> RepliesConfig {
        RepliesConfig {
            builtin_rules: true,
            rules: Vec::new(),
        }
    }
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// The rule as configured.
    pub rule: ReplyRule,
    code: Option<Regex>,
    enhanced: Option<Regex>,
    text: Option<Regex>,
}

impl CompiledRule {
    fn new(rule: ReplyRule, field: &str) -> Result<CompiledRule, ConfigError> {
        let compile = |name: &str, src: &Option<String>| {
            src.as_deref()
                .map(Regex::new)
                .transpose()
                .map_err(|e| ConfigError::new(format!("{field}.{name}"), e.to_string()))
        };
        let code = compile("code", &rule.code)?;
        let enhanced = compile("enhanced", &rule.enhanced)?;
        let text = compile("text", &rule.text)?;
        if code.is_none() && enhanced.is_none() && text.is_none() {
            return Err(ConfigError::new(
                field,
                "a rule needs at least one of code, enhanced, text",
            ));
        }
        Ok(CompiledRule {
            rule,
            code,
            enhanced,
            text,
        })
    }

    fn matches(&self, provider: Option<&str>, reply: &Reply, enhanced: &str) -> bool {
        if self.rule.provider.is_some() && self.rule.provider.as_deref() != provider {
            return false;
        }
        let code_ok = self
            .code
            .as_ref()
            .is_none_or(|r| r.is_match(&reply.code.to_string()));
        let enh_ok = self.enhanced.as_ref().is_none_or(|r| r.is_match(enhanced));
        let text_ok = self.text.as_ref().is_none_or(|r| r.is_match(&reply.text));
        code_ok && enh_ok && text_ok
    }
}

/// The compiled rule list.
#[derive(Clone, Debug)]
pub struct ReplyRules {
    rules: Vec<CompiledRule>,
}

impl ReplyRules {
    /// Compiles configured rules, then (if enabled) the built-in ones.
    pub fn new(cfg: &RepliesConfig) -> Result<ReplyRules, ConfigError> {
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            rules.push(CompiledRule::new(
                r.clone(),
                &format!("replies.rules[{i}]"),
            )?);
        }
        if cfg.builtin_rules {
            for r in super::builtin_reply_rules() {
                let field = format!("builtin reply rule {}", r.name);
                rules.push(CompiledRule::new(r, &field)?);
            }
        }
        Ok(ReplyRules { rules })
    }

    /// The first rule matching `reply` on a site of `provider`.
    pub fn find(&self, provider: Option<&str>, reply: &Reply) -> Option<&ReplyRule> {
        let enhanced = reply.enhanced.map(|e| e.to_string()).unwrap_or_default();
        self.rules
            .iter()
            .find(|r| r.matches(provider, reply, &enhanced))
            .map(|r| &r.rule)
    }
}
