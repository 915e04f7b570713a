//! The suppression API over HTTP JSON (docs/ingest.md, "Managing
//! suppressions"): `GET /v1/suppressions` pages through the list,
//! `POST /v1/suppressions` adds entries from JSON or CSV (a bulk import),
//! `POST /v1/suppressions/remove` and `DELETE /v1/suppressions/{address}`
//! take addresses off it. The API key is checked before the body is read.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use sluice_proto::v1::TenantSuppression;

use crate::IngestError;
use crate::http::{Authed, error_response, parse, read_body};
use crate::pipeline::Ingestor;
use crate::suppression_list::by_index;

/// The routes, on the API's state.
pub(crate) fn routes() -> Router<Arc<Ingestor>> {
    Router::new()
        .route("/v1/suppressions", get(list).post(add))
        .route("/v1/suppressions/remove", post(remove))
        .route("/v1/suppressions/{address}", delete(remove_one))
}

fn answer<T: Serialize>(result: Result<T, IngestError>) -> Response {
    match result {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(err) => error_response(&err, None),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    page_token: String,
    #[serde(default)]
    page_size: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    address: String,
    #[serde(default)]
    reason: String,
    /// RFC 3339; only in answers (a request that sets it is refused).
    #[serde(skip_deserializing, skip_serializing_if = "String::is_empty")]
    created_at: String,
}

#[derive(Debug, Serialize)]
struct JsonPage {
    suppressions: Vec<JsonEntry>,
    next_page_token: String,
}

async fn list(
    State(ingestor): State<Arc<Ingestor>>,
    Authed(tenant): Authed,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let Query(query) = query.map_err(|e| IngestError::invalid("query", e.body_text()))?;
        let list = ingestor.suppression_list();
        let (entries, next_page_token) = list
            .list(tenant.name(), &query.page_token, query.page_size)
            .await?;
        let suppressions = entries
            .into_iter()
            .map(|s| JsonEntry {
                created_at: s.created_at.map(|t| t.to_string()).unwrap_or_default(),
                address: s.address,
                reason: s.reason,
            })
            .collect();
        Ok(JsonPage {
            suppressions,
            next_page_token,
        })
    };
    answer(result.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonAdd {
    suppressions: Vec<JsonEntry>,
}

#[derive(Debug, Serialize)]
struct Added {
    added: u32,
}

async fn add(
    State(ingestor): State<Arc<Ingestor>>,
    Authed(tenant): Authed,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let body = read_body(&ingestor, body).await?;
        let list = ingestor.suppression_list();
        let added = if is_csv(&headers) {
            let (entries, lines) = from_csv(&body)?;
            let name = |i: usize| format!("line {}", lines[i]);
            list.add(tenant.name(), entries, &name).await?
        } else {
            let request: JsonAdd = parse(&body)?;
            let entries = request.suppressions.into_iter().map(entry).collect();
            list.add(tenant.name(), entries, &by_index).await?
        };
        Ok(Added { added })
    };
    answer(result.await)
}

fn entry(e: JsonEntry) -> TenantSuppression {
    TenantSuppression {
        address: e.address,
        reason: e.reason,
        created_at: None,
    }
}

fn is_csv(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv"))
}

/// The entries of a CSV body and the line each came from. Columns are
/// `address` (or `email`) and an optional `reason`, found by name when
/// the first line names them, else in that order; other columns are
/// ignored, so an export from elsewhere loads as it is. Each line is one
/// record (no address spans lines), so errors can name the line.
pub(crate) fn from_csv(body: &[u8]) -> Result<(Vec<TenantSuppression>, Vec<usize>), IngestError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| IngestError::invalid("body", format!("is not UTF-8 text: {e}")))?;
    let mut columns = (0, Some(1));
    let (mut entries, mut lines) = (Vec::new(), Vec::new());
    let mut first = true;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = csv_record(line).map_err(|e| {
            IngestError::invalid(format!("line {}", i + 1), format!("is not CSV: {e}"))
        })?;
        if std::mem::take(&mut first)
            && let Some(named) = header_columns(&record)
        {
            columns = named;
            continue;
        }
        let field = |c: Option<usize>| c.and_then(|c| record.get(c)).unwrap_or("").to_owned();
        entries.push(TenantSuppression {
            address: field(Some(columns.0)),
            reason: field(columns.1),
            created_at: None,
        });
        lines.push(i + 1);
    }
    Ok((entries, lines))
}

/// One line as one CSV record, fields trimmed.
fn csv_record(line: &str) -> Result<csv::StringRecord, csv::Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    reader.read_record(&mut record)?;
    Ok(record)
}

/// The (address, reason) columns when `first` is a header line.
fn header_columns(first: &csv::StringRecord) -> Option<(usize, Option<usize>)> {
    let find = |names: &[&str]| {
        first
            .iter()
            .position(|f| names.iter().any(|n| f.eq_ignore_ascii_case(n)))
    };
    let address = find(&["address", "email", "email_address"])?;
    Some((address, find(&["reason"])))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRemove {
    addresses: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Removed {
    removed: u32,
}

async fn remove(
    State(ingestor): State<Arc<Ingestor>>,
    Authed(tenant): Authed,
    body: Body,
) -> Response {
    let result = async {
        let body = read_body(&ingestor, body).await?;
        let request: JsonRemove = parse(&body)?;
        let list = ingestor.suppression_list();
        let removed = list.remove(tenant.name(), request.addresses).await?;
        Ok(Removed { removed })
    };
    answer(result.await)
}

#[derive(Debug, Serialize)]
struct RemovedOne {
    removed: bool,
}

async fn remove_one(
    State(ingestor): State<Arc<Ingestor>>,
    Authed(tenant): Authed,
    Path(address): Path<String>,
) -> Response {
    let list = ingestor.suppression_list();
    let result = list.remove(tenant.name(), vec![address]).await;
    answer(result.map(|n| RemovedOne { removed: n > 0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(csv: &str) -> Vec<(String, String, usize)> {
        let (entries, lines) = from_csv(csv.as_bytes()).expect("csv");
        entries
            .into_iter()
            .zip(lines)
            .map(|(e, line)| (e.address, e.reason, line))
            .collect()
    }

    #[test]
    fn csv_without_a_header_is_address_then_reason() {
        let got = rows("a@x.test\n\nb@x.test , complaint\n");
        assert_eq!(
            got,
            [
                ("a@x.test".into(), String::new(), 1),
                ("b@x.test".into(), "complaint".into(), 3)
            ]
        );
    }

    #[test]
    fn csv_with_a_header_finds_its_columns_by_name() {
        let got = rows("created,Email,reason,source\n2024-01-01,\"a@x.test\",unsubscribe,x\n");
        assert_eq!(got, [("a@x.test".into(), "unsubscribe".into(), 2)]);
    }

    #[test]
    fn quoted_fields_are_read_and_binary_is_refused() {
        let got = rows("\"a@x.test\",\"hard_bounce\"\r\n");
        assert_eq!(got, [("a@x.test".into(), "hard_bounce".into(), 1)]);
        let err = from_csv(b"a@x.test\n\xff\xfe").expect_err("not text");
        assert!(err.to_string().contains("body"), "{err}");
    }

    #[test]
    fn an_entry_may_not_set_its_time() {
        let ok = parse::<JsonAdd>(br#"{"suppressions":[{"address":"a@x.test"}]}"#);
        assert_eq!(ok.expect("parses").suppressions.len(), 1);
        let body =
            br#"{"suppressions":[{"address":"a@x.test","created_at":"2020-01-01T00:00:00Z"}]}"#;
        let err = parse::<JsonAdd>(body).expect_err("created_at is the server's");
        assert!(err.to_string().contains("created_at"), "{err}");
    }

    #[test]
    fn only_text_csv_is_csv() {
        let mut headers = HeaderMap::new();
        assert!(!is_csv(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "text/csv; charset=utf-8".parse().unwrap(),
        );
        assert!(is_csv(&headers));
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!is_csv(&headers));
    }
}
