//! The configuration as an operator writes it.

use sluice_shaping::{Engine, EngineConfig, RuleAction, Span};

const EXAMPLE: &str = r#"
[[ips]]
address = "192.0.2.10"
pool = "bulk"
warmup_plan = "standard"

[[ips]]
address = "192.0.2.11"
pool = "bulk"

[[sites.rules]]
pattern = "*.mx.example.net"
site = "example"
provider = "example"

[limits.default]
messages_per_minute = 300
burst = 5

[limits.sites.google]
messages_per_second = 20
max_connections = 20

[limits.providers.microsoft]
messages_per_hour = 50000

[limits.ips."192.0.2.10".default]
max_connections = 4

[backoff]
decrease_percent = 60
increase_interval = "2m"

[[replies.rules]]
name = "example-slow"
provider = "example"
code = "^421$"
text = "(?i)slow down"
action = "slow"

[warmup]
idle_days = 21

[warmup.plans.short]
days = [{ daily = 100, hourly = 20 }, { daily = 1000, sites = { google = 300 } }]

[retry]
first_delay = "10m"
max_age = "4d"
tiers = ["1m", "10m", "1h", "6h", "1d"]
"#;

#[test]
fn example_config_parses_and_builds() {
    let cfg: EngineConfig = toml::from_str(EXAMPLE).unwrap();
    assert_eq!(cfg.ips.len(), 2);
    assert_eq!(cfg.limits.sites["google"].messages_per_second, Some(20));
    assert_eq!(cfg.backoff.decrease_percent, 60);
    assert_eq!(cfg.backoff.increase_interval, Span::mins(2));
    assert_eq!(
        cfg.backoff.success_streak, 20,
        "unset fields keep their defaults"
    );
    assert_eq!(cfg.replies.rules[0].action, RuleAction::Slow);
    assert_eq!(cfg.warmup.plans["short"].days[1].sites["google"], 300);
    assert_eq!(cfg.retry.max_age, Span::days(4));
    let engine = Engine::new(cfg).unwrap();
    assert_eq!(engine.retry().tiers().last().unwrap().name, "1d");
}

#[test]
fn empty_config_is_valid() {
    let cfg: EngineConfig = toml::from_str("").unwrap();
    Engine::new(cfg).unwrap();
}

#[test]
fn unknown_key_is_rejected_by_name() {
    let err = toml::from_str::<EngineConfig>("[limits.default]\nmessages_per_fortnight = 3\n")
        .unwrap_err();
    assert!(err.to_string().contains("messages_per_fortnight"), "{err}");
    let err = toml::from_str::<EngineConfig>("[warmup]\nidle_dayz = 3\n").unwrap_err();
    assert!(err.to_string().contains("idle_dayz"), "{err}");
}

#[test]
fn semantic_errors_name_the_field() {
    let cfg: EngineConfig =
        toml::from_str("[[ips]]\naddress = \"192.0.2.1\"\npool = \"p\"\nwarmup_plan = \"nope\"\n")
            .unwrap();
    assert_eq!(Engine::new(cfg).unwrap_err().field, "ips[0].warmup_plan");
    let cfg: EngineConfig =
        toml::from_str("[[replies.rules]]\nname = \"x\"\ntext = \"(\"\naction = \"retry\"\n")
            .unwrap();
    assert_eq!(Engine::new(cfg).unwrap_err().field, "replies.rules[0].text");
    let err =
        toml::from_str::<EngineConfig>("[retry]\nfirst_delay = \"5 fortnights\"\n").unwrap_err();
    assert!(err.to_string().contains("fortnights"), "{err}");
}
