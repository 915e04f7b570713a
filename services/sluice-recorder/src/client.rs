//! The CLI side of the Query service: `sluice status`, `sluice stats`,
//! `sluice reputation`. Each call returns the text to print: a table, or
//! JSON with `json = true`.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};
use sluice_proto::v1::query_client::QueryClient;
use sluice_proto::v1::{
    Event, EventKind, GetMessageRequest, GetReputationRequest, GetStatsRequest, StatsDimension,
};
use tonic::transport::Channel;

use crate::RecorderError;

/// Default address of the Query service (`query_listen` of the recorder).
pub const DEFAULT_QUERY_ADDR: &str = "http://127.0.0.1:7402";

async fn connect(addr: &str) -> Result<QueryClient<Channel>, RecorderError> {
    let endpoint =
        Channel::from_shared(addr.to_owned()).map_err(|e| RecorderError::InvalidArgument {
            field: "--query-addr",
            reason: format!("{addr}: {e}"),
        })?;
    endpoint
        .connect()
        .await
        .map(QueryClient::new)
        .map_err(|e| RecorderError::QueryUnreachable {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })
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
            crate::time::day_of(secs),
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

/// `sluice status <message-id>`: the message's state and history.
pub async fn status(addr: &str, message_id: &str, as_json: bool) -> Result<String, RecorderError> {
    let request = GetMessageRequest {
        message_id: message_id.to_owned(),
    };
    let status = connect(addr)
        .await?
        .get_message(request)
        .await?
        .into_inner();
    if as_json {
        let history: Vec<Value> = status.history.iter().map(event_json).collect();
        let doc = json!({"message_id": status.message_id, "state": kind_name(status.state), "history": history});
        return Ok(doc.to_string());
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
    Ok(format!(
        "message {}: {}\n{t}",
        status.message_id,
        kind_name(status.state)
    ))
}

/// Today in UTC, `YYYY-MM-DD` (the default day range of `sluice stats`).
pub fn today() -> String {
    crate::time::day_of(crate::consumer::now_secs())
}

/// Parses `--by`: campaign, tenant, ip or site.
pub fn parse_dimension(by: &str) -> Result<StatsDimension, RecorderError> {
    match by {
        "campaign" => Ok(StatsDimension::Campaign),
        "tenant" => Ok(StatsDimension::Tenant),
        "ip" | "source-ip" => Ok(StatsDimension::SourceIp),
        "site" => Ok(StatsDimension::Site),
        other => Err(RecorderError::InvalidArgument {
            field: "--by",
            reason: format!("{other:?}; use campaign, tenant, ip or site"),
        }),
    }
}

/// `sluice stats --by D --key K --from DAY --to DAY`: one row per day with
/// traffic; `by` is campaign, tenant, ip or site; days are UTC `YYYY-MM-DD`.
pub async fn stats(
    addr: &str,
    by: &str,
    key: &str,
    (from_day, to_day): (&str, &str),
    as_json: bool,
) -> Result<String, RecorderError> {
    let request = GetStatsRequest {
        dimension: parse_dimension(by)?.into(),
        key: key.to_owned(),
        from_day: from_day.to_owned(),
        to_day: to_day.to_owned(),
    };
    let rows = connect(addr)
        .await?
        .get_stats(request)
        .await?
        .into_inner()
        .rows;
    if as_json {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({"day": r.day, "key": r.key, "accepted": r.accepted, "delivered": r.delivered,
                "deferred": r.deferred, "bounced": r.bounced, "expired": r.expired,
                "suppressed": r.suppressed, "complained": r.complained})
            })
            .collect();
        return Ok(Value::Array(rows).to_string());
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
    ];
    let mut t = table(&header);
    for r in &rows {
        let n = [
            r.accepted,
            r.delivered,
            r.deferred,
            r.bounced,
            r.expired,
            r.suppressed,
            r.complained,
        ];
        let mut cells = vec![r.day.clone(), r.key.clone()];
        cells.extend(n.iter().map(u64::to_string));
        t.add_row(cells);
    }
    Ok(t.to_string())
}

fn pct(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

/// `sluice reputation [--ip] [--site]`: paths, then tenants.
pub async fn reputation(
    addr: &str,
    ip: &str,
    site: &str,
    as_json: bool,
) -> Result<String, RecorderError> {
    let request = GetReputationRequest {
        source_ip: ip.to_owned(),
        site: site.to_owned(),
        tenant: String::new(),
    };
    let resp = connect(addr)
        .await?
        .get_reputation(request)
        .await?
        .into_inner();
    if as_json {
        let paths: Vec<Value> = resp.rows.iter().map(|r| json!({
            "source_ip": r.source_ip, "site": r.site, "sent": r.sent, "delivery_rate": r.delivery_rate,
            "deferral_rate": r.deferral_rate, "hard_bounce_rate": r.hard_bounce_rate,
            "complaint_rate": r.complaint_rate, "signal": r.signal, "window_hours": r.window_hours,
            "computed_at": time_text(r.computed_at.as_ref())})).collect();
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
        return Ok(json!({"paths": paths, "tenants": tenants}).to_string());
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
    Ok(out)
}
