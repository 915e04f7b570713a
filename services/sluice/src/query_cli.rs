//! `sluice status`, `sluice stats`, `sluice reputation`: ask the recorder's
//! Query service (through [`sluice_recorder::client::QueryClient`]) and
//! render the answer as a table (comfy-table), or JSON with `--json`. Each
//! takes the address and the token (`--token` / `SLUICE_QUERY_TOKEN`).

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};
use sluice_proto::v1::{Event, EventKind, GetReputationResponse, MessageStatus, StatsRow};
use sluice_recorder::RecorderError;
use sluice_recorder::client::QueryClient;

#[cfg(test)]
mod tests;

/// Where the Query service is and how to reach it.
pub struct Remote<'a> {
    pub addr: &'a str,
    pub token: Option<&'a str>,
    pub tls: sluice_node::tls::TlsConfig,
}

impl Remote<'_> {
    async fn connect(&self) -> Result<QueryClient, RecorderError> {
        QueryClient::connect_over(self.addr, self.token, &self.tls).await
    }
}

/// `sluice status <message-id>`: the message's state and history.
pub async fn status(
    at: &Remote<'_>,
    message_id: &str,
    as_json: bool,
) -> Result<String, RecorderError> {
    let status = at.connect().await?.message(message_id).await?;
    Ok(render_status(&status, as_json))
}

/// `sluice stats --by D --key K --from DAY --to DAY`: one row per day with
/// traffic; `by` is campaign, tenant, ip or site; days are UTC `YYYY-MM-DD`.
pub async fn stats(
    at: &Remote<'_>,
    by: &str,
    key: &str,
    days: (&str, &str),
    as_json: bool,
) -> Result<String, RecorderError> {
    let rows = at.connect().await?.stats(by, key, days).await?;
    Ok(render_stats(&rows, as_json))
}

/// `sluice reputation [--ip] [--site]`: paths, then tenants.
pub async fn reputation(
    at: &Remote<'_>,
    ip: &str,
    site: &str,
    as_json: bool,
) -> Result<String, RecorderError> {
    let resp = at.connect().await?.reputation(ip, site).await?;
    Ok(render_reputation(&resp, as_json))
}

fn kind_name(kind: i32) -> String {
    EventKind::try_from(kind).map_or_else(
        |_| format!("unknown({kind})"),
        |k| {
            k.as_str_name()
                .trim_start_matches("EVENT_KIND_")
                .to_ascii_lowercase()
        },
    )
}

fn time_text(t: Option<&prost_types::Timestamp>) -> String {
    t.map_or_else(String::new, |t| {
        let secs = t.seconds;
        let within_day = secs.rem_euclid(86_400);
        format!(
            "{} {:02}:{:02}:{:02}Z",
            sluice_recorder::time::day_of(secs),
            within_day / 3600,
            within_day % 3600 / 60,
            within_day % 60
        )
    })
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

fn event_json(e: &Event) -> Value {
    let reply = e.reply.as_ref();
    json!({
        "event_id": e.event_id, "kind": kind_name(e.kind), "at": time_text(e.at.as_ref()),
        "attempt": e.attempt, "source_ip": e.source_ip, "site": e.site, "mx_host": e.mx_host,
        "reply_code": reply.map(|r| r.code), "reply_enhanced_code": reply.map(|r| r.enhanced_code.clone()),
        "reply_text": reply.map(|r| r.text.clone()),
        "bounce_class": e.bounce_class().as_str_name().trim_start_matches("BOUNCE_CLASS_").to_ascii_lowercase(),
    })
}

fn render_status(status: &MessageStatus, as_json: bool) -> String {
    if as_json {
        let history: Vec<Value> = status.history.iter().map(event_json).collect();
        let doc = json!({"message_id": status.message_id, "state": kind_name(status.state), "history": history});
        return doc.to_string();
    }
    let mut t = table(&["at", "event", "attempt", "source IP", "site", "reply"]);
    for e in &status.history {
        let reply = e.reply.as_ref().map_or_else(String::new, |r| {
            format!("{} {} {}", r.code, r.enhanced_code, r.text)
                .trim()
                .to_owned()
        });
        t.add_row(vec![
            time_text(e.at.as_ref()),
            kind_name(e.kind),
            e.attempt.to_string(),
            e.source_ip.clone(),
            e.site.clone(),
            reply,
        ]);
    }
    format!(
        "message {}: {}\n{t}",
        status.message_id,
        kind_name(status.state)
    )
}

fn render_stats(rows: &[StatsRow], as_json: bool) -> String {
    if as_json {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({"day": r.day, "key": r.key, "accepted": r.accepted, "delivered": r.delivered,
                "deferred": r.deferred, "bounced": r.bounced, "expired": r.expired,
                "suppressed": r.suppressed, "complained": r.complained, "opened": r.opened,
                "clicked": r.clicked})
            })
            .collect();
        return Value::Array(rows).to_string();
    }
    let header = [
        "day",
        "key",
        "accepted",
        "delivered",
        "deferred",
        "bounced",
        "expired",
        "suppressed",
        "complained",
        "opened",
        "clicked",
    ];
    let mut t = table(&header);
    for r in rows {
        let n = [
            r.accepted,
            r.delivered,
            r.deferred,
            r.bounced,
            r.expired,
            r.suppressed,
            r.complained,
            r.opened,
            r.clicked,
        ];
        let mut cells = vec![r.day.clone(), r.key.clone()];
        cells.extend(n.iter().map(u64::to_string));
        t.add_row(cells);
    }
    t.to_string()
}

fn pct(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

fn reputation_json(resp: &GetReputationResponse) -> String {
    let paths: Vec<Value> = resp
        .rows
        .iter()
        .map(|r| {
            json!({
        "source_ip": r.source_ip, "site": r.site, "sent": r.sent, "delivery_rate": r.delivery_rate,
        "deferral_rate": r.deferral_rate, "hard_bounce_rate": r.hard_bounce_rate,
        "complaint_rate": r.complaint_rate, "signal": r.signal, "window_hours": r.window_hours,
        "computed_at": time_text(r.computed_at.as_ref())})
        })
        .collect();
    let tenants: Vec<Value> = resp
        .tenants
        .iter()
        .map(|r| {
            json!({
        "tenant": r.tenant, "sent": r.sent, "delivery_rate": r.delivery_rate,
        "deferral_rate": r.deferral_rate, "hard_bounce_rate": r.hard_bounce_rate,
        "complaint_rate": r.complaint_rate, "signal": r.signal, "window_hours": r.window_hours,
        "computed_at": time_text(r.computed_at.as_ref())})
        })
        .collect();
    json!({"paths": paths, "tenants": tenants}).to_string()
}

fn render_reputation(resp: &GetReputationResponse, as_json: bool) -> String {
    if as_json {
        return reputation_json(resp);
    }
    let head = [
        "sent",
        "delivered",
        "deferred",
        "hard bounce",
        "complaint",
        "signal",
    ];
    let mut paths = table(&[&["source IP", "site"][..], &head[..]].concat());
    for r in &resp.rows {
        paths.add_row(vec![
            r.source_ip.clone(),
            r.site.clone(),
            r.sent.to_string(),
            pct(r.delivery_rate),
            pct(r.deferral_rate),
            pct(r.hard_bounce_rate),
            pct(r.complaint_rate),
            r.signal.clone(),
        ]);
    }
    let mut out = paths.to_string();
    if !resp.tenants.is_empty() {
        let mut tenants = table(&[&["tenant"][..], &head[..]].concat());
        for r in &resp.tenants {
            tenants.add_row(vec![
                r.tenant.clone(),
                r.sent.to_string(),
                pct(r.delivery_rate),
                pct(r.deferral_rate),
                pct(r.hard_bounce_rate),
                pct(r.complaint_rate),
                r.signal.clone(),
            ]);
        }
        out = format!("{out}\n{tenants}");
    }
    out
}
