//! The account-linking pages a user's browser visits:
//!
//! - `GET /link/<server>/start?ticket=…` checks the ticket (from the link
//!   URL a tool error or the `accounts` tool gave) without using it and
//!   shows a confirmation page naming the Cortex user the account would be
//!   linked to, with a warning for whoever was sent someone else's link;
//! - `POST /link/<server>/start` (that page's "Continue" form, the ticket in
//!   the body; refused when its `Origin` is not the gateway's own) redirects
//!   to the provider's consent, setting a cookie that binds the link to
//!   this browser;
//! - `GET /link/<server>/callback?code=…&state=…` is where the provider
//!   sends the browser back: it redeems the ticket, stores the grant and
//!   says which account is linked;
//! - `GET /link/client-metadata.json` is the gateway's Client ID Metadata
//!   Document (only when the gateway's origin is https).
//!
//! Every answer is a small self-contained HTML page (or the redirect) that
//! is never cached, runs no script and cannot be framed. Pages send no
//! referrer (the callback's URL holds a code), except the confirmation
//! page, which sends one to the gateway itself only: a browser then sends
//! the form's `Origin` (under `no-referrer` it would send `null`). Errors say what to do. The flow itself lives in
//! `crate::link`.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{
    audit,
    link::{Accounts, CLIENT_METADATA_PATH, CallbackQuery, LinkPageError},
};

/// The audited prefix: every link page gets an audit line (path, status,
/// the `sub` of the ticket, the server; never the query).
pub(crate) const AUDITED: &str = "/link/";

/// The largest "Continue" form body accepted (it holds one ticket).
const MAX_FORM_BYTES: usize = 1024;

/// The link routes over `accounts`.
pub(crate) fn router(accounts: Arc<Accounts>) -> Router {
    Router::new()
        .route(
            "/link/{server}/start",
            get(confirm)
                .post(start)
                .layer(DefaultBodyLimit::max(MAX_FORM_BYTES)),
        )
        .route("/link/{server}/callback", get(callback))
        .route(CLIENT_METADATA_PATH, get(client_metadata))
        .with_state(accounts)
}

#[derive(serde::Deserialize)]
struct StartQuery {
    ticket: Option<String>,
}

/// The confirmation page: whose Cortex account the link is for, a warning
/// for someone who was sent the link, and the "Continue" form.
async fn confirm(
    State(accounts): State<Arc<Accounts>>,
    Path(server): Path<String>,
    Query(query): Query<StartQuery>,
) -> Response {
    let Some(ticket) = query.ticket else {
        return error_page(&LinkPageError::BadTicket);
    };
    match accounts.confirm(&server, &ticket).await {
        Ok(holder) => {
            audit::note_link(Some(&holder.sub), &server);
            let server = escape(&server);
            let body = format!(
                "<p>Link your <b>{server}</b> account to the Cortex user <b>{label}</b>.</p>\
                 <p><b>If you did not ask for this link in your own AI agent, close this page:</b> \
                 whoever sent it would get access to your {server} account.</p>\
                 <form method=\"post\" action=\"/link/{server}/start\">\
                 <input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">\
                 <button type=\"submit\">Continue</button></form>",
                label = escape(&holder.label),
                ticket = escape(&ticket),
            );
            let mut response = html_page(StatusCode::OK, "Link an account", &body);
            response.headers_mut().insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            );
            response
        }
        Err(e) => {
            audit::note_link(None, &server);
            error_page(&e)
        }
    }
}

/// The confirmation page's form: checks where it was posted from and the
/// ticket, then sends the browser to the provider's consent.
async fn start(
    State(accounts): State<Arc<Accounts>>,
    Path(server): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|o| accounts.is_own_origin(o))
    {
        audit::note_link(None, &server);
        return page(
            StatusCode::FORBIDDEN,
            "Linking refused",
            "This link was continued from a page that is not this gateway's own. Open the link \
             your AI agent gave you in your browser and press Continue on that page.",
        );
    }
    let ticket = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned());
    let Some(ticket) = ticket else {
        audit::note_link(None, &server);
        return error_page(&LinkPageError::BadTicket);
    };
    match accounts.start(&server, &ticket).await {
        Ok(started) => {
            audit::note_link(Some(&started.sub), &server);
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            match (
                HeaderValue::from_str(&started.location),
                HeaderValue::from_str(&started.cookie),
            ) {
                (Ok(location), Ok(cookie)) => {
                    headers.insert(header::LOCATION, location);
                    headers.insert(header::SET_COOKIE, cookie);
                }
                _ => return error_page(&LinkPageError::Unavailable),
            }
            page_headers(headers);
            response
        }
        Err(e) => {
            audit::note_link(None, &server);
            error_page(&e)
        }
    }
}

async fn callback(
    State(accounts): State<Arc<Accounts>>,
    Path(server): Path<String>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    let result = accounts
        .finish(&server, &query, Some(cookies.as_str()))
        .await;
    let mut response = match result {
        Ok(linked) => {
            audit::note_link(Some(&linked.sub), &server);
            page(
                StatusCode::OK,
                "Account linked",
                &format!(
                    "Your <b>{}</b> account <b>{}</b> is linked. You can close this window and \
                 return to your agent.",
                    escape(&server),
                    escape(&linked.account)
                ),
            )
        }
        Err(e) => {
            audit::note_link(None, &server);
            error_page(&e)
        }
    };
    if let Ok(clear) = HeaderValue::from_str(&Accounts::clear_cookie(&server)) {
        response.headers_mut().insert(header::SET_COOKIE, clear);
    }
    response
}

async fn client_metadata(State(accounts): State<Arc<Accounts>>) -> Response {
    match accounts.client_metadata() {
        Some(doc) => Json(doc).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn status_of(e: &LinkPageError) -> StatusCode {
    match e {
        LinkPageError::UnknownServer(_) => StatusCode::NOT_FOUND,
        LinkPageError::BadTicket | LinkPageError::BadState => StatusCode::BAD_REQUEST,
        LinkPageError::Denied(_) => StatusCode::FORBIDDEN,
        LinkPageError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn error_page(e: &LinkPageError) -> Response {
    page(status_of(e), "Linking failed", &escape(&e.to_string()))
}

/// No caching, no referrer, no script, no framing.
pub(super) fn page_headers(headers: &mut HeaderMap) {
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// A small page of one paragraph; `text_html` is already escaped.
pub(super) fn page(status: StatusCode, title: &str, text_html: &str) -> Response {
    html_page(status, title, &format!("<p>{text_html}</p>"))
}

/// A small page; `body_html` is already escaped.
fn html_page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;\
         padding:0 1em;line-height:1.5}}</style></head>\
         <body><h1>{title}</h1>{body_html}</body></html>"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    page_headers(headers);
    response
}

/// HTML text escaping.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
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
    fn page_text_is_escaped() {
        assert_eq!(
            escape("<b a='x'>&\"</b>"),
            "&lt;b a=&#39;x&#39;&gt;&amp;&quot;&lt;/b&gt;"
        );
    }
}
