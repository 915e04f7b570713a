//! The printed report: two comfy-table tables and the verdict.

use std::fmt::Write as _;
use std::time::Duration;

use comfy_table::{CellAlignment, Table, presets::UTF8_FULL_CONDENSED};

use super::report::{IpRow, Outcome, ProviderRow, WarmupCheck};

fn table(header: &[&str], rows: Vec<Vec<String>>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    for i in 1..header.len() {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

fn limit(l: Option<u32>) -> String {
    l.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn provider_line(p: &ProviderRow) -> Vec<String> {
    vec![
        p.name.clone(),
        p.delivered.to_string(),
        p.events.deferred.to_string(),
        p.events.bounced.to_string(),
        p.events.expired.to_string(),
        format!(
            "{} / {} / {}",
            p.peak_per_minute,
            p.sender_limit,
            limit(p.isp_limit)
        ),
        format!("{} / {}", p.connections, limit(p.connection_limit)),
        p.violations.to_string(),
    ]
}

fn warmup_cells(w: Option<&WarmupCheck>) -> [String; 3] {
    let Some(w) = w else {
        return ["warmed".into(), "-".into(), "-".into()];
    };
    let Some(cap) = w.cap else {
        return [
            format!("day {} (done)", w.day),
            w.sent.to_string(),
            "yes".into(),
        ];
    };
    [
        format!("day {}: {} (site {})", w.day, cap, limit(w.site_cap)),
        format!(
            "{} (ISPs took {}, busiest site {})",
            w.sent, w.accepted_by_isps, w.busiest_site
        ),
        if w.held { "yes" } else { "NO" }.into(),
    ]
}

fn ip_line(r: &IpRow) -> Vec<String> {
    let sites: Vec<String> = r
        .sites
        .iter()
        .map(|s| {
            format!(
                "{} {} / {} / {}",
                s.site,
                s.peak_per_minute,
                s.sender_limit,
                limit(s.isp_limit)
            )
        })
        .collect();
    let [plan, sent, held] = warmup_cells(r.warmup.as_ref());
    vec![
        r.ip.clone(),
        r.events.delivered.to_string(),
        r.events.deferred.to_string(),
        r.events.bounced.to_string(),
        sites.join("\n"),
        plan,
        sent,
        held,
    ]
}

/// The report as printed at the end of `sluice demo`.
pub fn render(o: &Outcome, elapsed: Duration) -> String {
    let mut out = String::new();
    let providers = table(
        &[
            "provider",
            "delivered",
            "deferred",
            "bounced",
            "expired",
            "peak/min: seen / sender / ISP",
            "connections: opened / ISP per IP",
            "violations",
        ],
        o.providers.iter().map(provider_line).collect(),
    );
    let ips = table(
        &[
            "source IP",
            "delivered",
            "deferred",
            "bounced",
            "peak/min by site: seen / sender / ISP",
            "warm-up cap today",
            "sent today",
            "held",
        ],
        o.ips.iter().map(ip_line).collect(),
    );
    let _ = writeln!(
        out,
        "\nPer provider (delivered: as counted by the simulated provider)\n{providers}"
    );
    let _ = writeln!(out, "\nPer source IP (from the events)\n{ips}");
    let t = &o.totals;
    let _ = writeln!(
        out,
        "\naccepted {} · delivered {} · bounced {} · expired {} · deferred attempts {} · duplicates {} · {:.1?}",
        o.accepted, t.delivered, t.bounced, t.expired, t.deferred, o.duplicates, elapsed
    );
    if o.passed() {
        let _ = writeln!(
            out,
            "PASS: every accepted message has exactly one final outcome, the providers hold exactly the delivered ones, no limit was violated, warm-up caps held."
        );
    }
    for f in &o.failures {
        let _ = writeln!(out, "FAIL: {f}");
    }
    out
}
