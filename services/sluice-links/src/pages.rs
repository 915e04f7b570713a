//! One-click unsubscribe (RFC 8058) on the HTTP listener: the signed link
//! in every message's `List-Unsubscribe` header. `POST` (what mailbox
//! providers send, body `List-Unsubscribe=One-Click`) records the
//! unsubscribe at once; `GET` (a person following the link) shows a page
//! whose button posts the same. Either way nothing changes unless the
//! token's signature holds. The recorder turns the `unsubscribed` event into
//! a suppression of the recipient for the tenant, which every ingest node
//! checks on the next submission (docs/feedback.md).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Links;
use crate::unsubscribe::{UnsubscribeTarget, path_of};

/// Largest request body read (the one-click body is 26 bytes).
const MAX_BODY: usize = 1024;

/// `GET` and `POST` of `<path>/{token}`.
pub fn routes(links: Arc<Links>) -> Router {
    let route = format!("{}/{{token}}", path_of(links.unsubscribe.base_url()));
    Router::new()
        .route(&route, get(page).post(unsubscribe))
        .with_state(links)
}

/// The page a person sees: a button that posts the unsubscribe (works
/// without JavaScript); a bad link says so and offers nothing.
async fn page(State(links): State<Arc<Links>>, Path(token): Path<String>) -> Response {
    match links.unsubscribe.verify(&token) {
        None => {
            links.sink.count("unsubscribe", "refused");
            refused()
        }
        Some(target) => html(
            StatusCode::OK,
            &format!(
                "<p>Stop {} to {}?</p>\n<form method=\"post\">\
                 <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
                 <button type=\"submit\">Unsubscribe</button></form>",
                what(&target),
                escape(&target.recipient)
            ),
        ),
    }
}

/// Records the unsubscribe of a valid token; a forged or altered one is
/// refused and changes nothing.
async fn unsubscribe(
    State(links): State<Arc<Links>>,
    Path(token): Path<String>,
    body: Body,
) -> Response {
    let Some(target) = links.unsubscribe.verify(&token) else {
        links.sink.count("unsubscribe", "refused");
        return refused();
    };
    // The body says only "one click"; it is read (bounded, in time too) so
    // the connection stays usable, and not otherwise needed.
    if tokio::time::timeout(links.body_timeout, axum::body::to_bytes(body, MAX_BODY))
        .await
        .is_err()
    {
        return html(
            StatusCode::REQUEST_TIMEOUT,
            "<p>The request took too long.</p>",
        );
    }
    match links.sink.publish(crate::unsubscribed(&target)).await {
        Ok(()) => {
            links.sink.count("unsubscribe", "recorded");
            tracing::info!(tenant = %target.tenant, message_id = %target.message_id, "one-click unsubscribe recorded");
            done(&target)
        }
        Err(err) => {
            links.sink.count("unsubscribe", "failed");
            tracing::warn!(error = %err, "an unsubscribe could not be recorded; the client may retry");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                "<p>We could not record this now; please try again in a minute.</p>",
            )
        }
    }
}

fn done(target: &UnsubscribeTarget) -> Response {
    html(
        StatusCode::OK,
        &format!(
            "<p>{} is unsubscribed from {}.</p>",
            escape(&target.recipient),
            what(target)
        ),
    )
}

/// "mail sent by acme", or "the list weekly of acme", escaped.
fn what(target: &UnsubscribeTarget) -> String {
    match target.list.as_str() {
        "" => format!("mail sent by {}", escape(&target.tenant)),
        list => format!("the list {} of {}", escape(list), escape(&target.tenant)),
    }
}

fn refused() -> Response {
    html(
        StatusCode::BAD_REQUEST,
        "<p>This unsubscribe link is not valid: it was altered, cut short or \
         not issued here. Nothing was changed; use the link from the message \
         as it arrived.</p>",
    )
}

fn html(status: StatusCode, body: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head>\
         <body>{body}</body></html>\n"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

/// HTML text escaping of names and addresses shown on the pages.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_on_the_page_are_escaped() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
