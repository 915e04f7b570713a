//! The alert rules and dashboards in deploy/monitoring/ use only metrics the
//! roles declare: every `sluice_*` series an expression names is a sample
//! of a family in the roles' registries (counters as `<family>_total`,
//! histograms as `<family>_bucket`/`_sum`/`_count`, gauges as themselves).
//! Each alert has an expression, a severity, a summary and a description;
//! each dashboard parses and each of its panels queries something.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn monitoring() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/monitoring")
}

/// Every role's exposition, with one sample in each labelled family (a
/// family without samples is not rendered).
fn expositions() -> String {
    use sluice_ingest::metrics::{Door, IngestMetrics};
    use sluice_sender::metrics::{OutcomeLabels, PathLabels, SenderMetrics};
    let ingest = IngestMetrics::new();
    ingest.answered(Door::Grpc, Ok(()), 0.01);
    ingest.recipients(1, 0);
    ingest.shed_counter(Door::Http).inc();
    ingest.tenant_recipients("acme", "published", 1);
    let sender = SenderMetrics::new();
    let site = "google".to_owned();
    let outcome = OutcomeLabels {
        kind: "delivered".into(),
        site: site.clone(),
        pool: "shared".into(),
        source_ip: "192.0.2.1".into(),
    };
    sender.outcomes.get_or_create(&outcome).inc();
    let path = PathLabels {
        source_ip: "192.0.2.1".into(),
        site,
    };
    sender.transaction_seconds.get_or_create(&path).observe(0.1);
    let site = sluice_sender::metrics::SiteLabels {
        site: "google".into(),
    };
    sender.site_queued.get_or_create(&site).set(1);
    sender.site_oldest_seconds.get_or_create(&site).set(1.0);
    sender
        .consumer_lag
        .replace([("sluice.outbound.main".to_owned(), 0, 1)]);
    let ip = "192.0.2.1".parse().expect("ip");
    sender.set_connections(&[(ip, (1, 1))].into());
    let recorder = sluice_recorder::Metrics::new();
    recorder
        .consumer_lag
        .replace([("sluice.events".to_owned(), 0, 1)]);
    recorder.tenant_events(&[(("acme".to_owned(), "bounced"), 1)].into());
    [
        ingest.render(),
        sender.render(),
        recorder.render(),
        sluice_control::metrics::ControlMetrics::new().render(),
    ]
    .join("\n")
}

/// Every sample name the roles can expose, from their `# TYPE` lines.
fn exposed() -> BTreeSet<String> {
    let text = expositions();
    let mut names = BTreeSet::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut words = line.split_whitespace();
        let (Some(family), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
    }
    assert!(names.len() > 30, "the registries declared only {names:?}");
    names
}

/// The `sluice_*` identifiers in `text`.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("sluice_") {
        let start = i + at;
        let before = start.checked_sub(1).map(|b| bytes[b]);
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            found.insert(text[start..end].to_owned());
        }
        i = end;
    }
    found
}

fn assert_exposed(file: &str, text: &str, exposed: &BTreeSet<String>) {
    let unknown: Vec<String> = referenced(text)
        .into_iter()
        .filter(|name| !exposed.contains(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "{file} uses metrics no role exposes: {unknown:?}"
    );
}

fn balanced(expr: &str) -> bool {
    let mut depth = 0i32;
    for c in expr.chars() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

/// Metrics of other programs an alert may read, each documented in
/// deploy/monitoring/README.md with where it comes from.
const EXTERNAL: &[&str] = &["kafka_server_replicamanager_underreplicatedpartitions"];

#[test]
fn alert_rules_use_declared_metrics_and_say_what_to_do() {
    let readme = std::fs::read_to_string(monitoring().join("README.md")).expect("README.md");
    for metric in EXTERNAL {
        assert!(
            readme.contains(metric),
            "README.md does not say where {metric} comes from"
        );
    }
    let exposed = exposed();
    let text = std::fs::read_to_string(monitoring().join("alerts.yaml")).expect("alerts.yaml");
    assert_exposed("alerts.yaml", &text, &exposed);
    let alerts: Vec<&str> = text.split("- alert: ").skip(1).collect();
    assert!(alerts.len() >= 10, "only {} alerts", alerts.len());
    for alert in alerts {
        let name = alert.lines().next().unwrap_or_default();
        let expr = alert
            .lines()
            .find_map(|l| l.trim().strip_prefix("expr: "))
            .unwrap_or_else(|| panic!("{name} has no expr"));
        let external = EXTERNAL.iter().any(|m| expr.contains(m));
        assert!(expr.contains("sluice_") || external, "{name}: {expr}");
        assert!(balanced(expr), "{name}: unbalanced {expr}");
        for needed in ["severity: ", "summary: ", "description: "] {
            assert!(alert.contains(needed), "{name} has no {needed}");
        }
    }
}

#[test]
fn dashboards_parse_and_query_declared_metrics() {
    let exposed = exposed();
    let dir = monitoring().join("dashboards");
    let mut uids = BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("dashboards directory") {
        let path = entry.expect("entry").path();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path).expect("dashboard");
        let dashboard: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            uids.insert(dashboard["uid"].as_str().expect("uid").to_owned()),
            "{file}: uid used twice"
        );
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{file} has no panels");
        for panel in panels {
            let targets = panel["targets"].as_array().expect("targets");
            assert!(
                !targets.is_empty(),
                "{file}: {} queries nothing",
                panel["title"]
            );
            for target in targets {
                let expr = target["expr"].as_str().expect("expr");
                assert!(expr.contains("sluice_") && balanced(expr), "{file}: {expr}");
            }
        }
        assert_exposed(&file, &text, &exposed);
        files += 1;
    }
    assert!(files >= 3, "{files} dashboards");
}

#[test]
fn an_unknown_metric_is_caught() {
    let exposed = exposed();
    let names = referenced("rate(sluice_sender_outcomes_total[5m]) + sluice_sender_nonsense");
    assert!(names.contains("sluice_sender_outcomes_total"));
    let unknown: Vec<_> = names.iter().filter(|n| !exposed.contains(*n)).collect();
    assert_eq!(unknown, ["sluice_sender_nonsense"]);
}
