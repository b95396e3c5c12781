//! The OAuth facade's endpoints (only with `CORTEX_OAUTH_FACADE`), under
//! the path of the gateway's issuer (`CORTEX_GATEWAY_ISSUER`; none by
//! default):
//!
//! - `GET /.well-known/oauth-authorization-server`: RFC 8414 metadata;
//! - `POST /register`: RFC 7591 registration of a public client;
//! - `GET /authorize`: the agent's authorization request, answered with a
//!   redirect to the identity provider (or back to the agent with an
//!   error), or a page when the request cannot go back to the agent;
//! - `GET /oauth/callback`: where the identity provider sends the browser
//!   back; answered with a redirect to the agent with the gateway's code;
//! - `POST /token`: codes and refresh tokens for access tokens;
//! - `POST /revoke`: RFC 7009 revocation.
//!
//! Token and registration answers are JSON and never cached; pages are
//! the link pages' small self-contained HTML. The flow lives in
//! `crate::facade`.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Query, State, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

use super::{
    App,
    link::{escape, page, page_headers},
};
use crate::{
    facade::{AuthorizeRequest, BrowserOutcome, CALLBACK_PATH, CallbackQuery, OAuthError, client},
    mcp::envelope::json_response,
};

/// The audited paths (with the facade on): each request gets an audit
/// line with its path and status, never its query or body.
pub(crate) const AUDITED: [&str; 5] = [
    "/authorize",
    CALLBACK_PATH,
    "/token",
    "/register",
    "/revoke",
];

/// The largest token or revocation form read.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The facade's routes (empty without a facade): its endpoints under the
/// issuer's path, its metadata at the RFC 8414 location of that issuer.
pub(crate) fn router(app: &Arc<App>) -> Router<Arc<App>> {
    let Some(facade) = &app.facade else {
        return Router::new();
    };
    let at = facade.issuer_path().to_string();
    Router::new()
        .route(
            &format!("/.well-known/oauth-authorization-server{at}"),
            get(metadata),
        )
        .route(
            &format!("{at}/register"),
            post(register).layer(DefaultBodyLimit::max(client::MAX_REGISTRATION_BYTES)),
        )
        .route(&format!("{at}/authorize"), get(authorize))
        .route(&format!("{at}{CALLBACK_PATH}"), get(callback))
        .route(
            &format!("{at}/token"),
            post(token).layer(DefaultBodyLimit::max(MAX_FORM_BYTES)),
        )
        .route(
            &format!("{at}/revoke"),
            post(revoke).layer(DefaultBodyLimit::max(MAX_FORM_BYTES)),
        )
}

async fn metadata(State(app): State<Arc<App>>) -> Response {
    let Some(facade) = &app.facade else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let scopes = crate::auth::scopes_supported(app.admission.catalog_scopes(), &[]);
    json_response(StatusCode::OK, &facade.metadata(scopes))
}

/// A JSON answer that is never cached.
fn no_store(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Seconds a client waits before trying a temporarily unavailable
/// endpoint again.
const RETRY_AFTER_SECS: u32 = 2;

fn error_response(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = no_store(
        status,
        &json!({"error": e.error, "error_description": e.description}),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

fn form(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form_type {
        return Err(OAuthError {
            status: 400,
            error: "invalid_request",
            description: "send the parameters as application/x-www-form-urlencoded".into(),
        });
    }
    Ok(url::form_urlencoded::parse(body).into_owned().collect())
}

async fn register(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let Some(facade) = &app.facade else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match facade.register(&body).await {
        Ok(doc) => no_store(StatusCode::CREATED, &doc),
        Err(e) => error_response(&e),
    }
}

fn browser(outcome: BrowserOutcome) -> Response {
    match outcome {
        BrowserOutcome::Redirect(location) => match HeaderValue::from_str(&location) {
            Ok(location) => {
                let mut response = StatusCode::FOUND.into_response();
                let headers = response.headers_mut();
                headers.insert(header::LOCATION, location);
                page_headers(headers);
                response
            }
            Err(_) => page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "The sign-in cannot continue: the address to return to is not usable.",
            ),
        },
        BrowserOutcome::Page(why) => page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            &format!("{}.", escape(&why)),
        ),
        BrowserOutcome::Unavailable => {
            let mut response = page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in unavailable",
                "The gateway cannot reach its shared store right now. Reload this page in a \
                 few seconds.",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            response
        }
    }
}

async fn authorize(
    State(app): State<Arc<App>>,
    query: Result<Query<AuthorizeRequest>, QueryRejection>,
) -> Response {
    let Some(facade) = &app.facade else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(Query(request)) = query else {
        return browser(BrowserOutcome::Page(
            "the authorization request's parameters cannot be read".into(),
        ));
    };
    browser(
        facade
            .authorize(request, || app.admission.catalog_scopes())
            .await,
    )
}

async fn callback(
    State(app): State<Arc<App>>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    let Some(facade) = &app.facade else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let query = query.map(|q| q.0).unwrap_or_default();
    browser(facade.callback(query).await)
}

async fn token(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(facade) = &app.facade else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let answer = match form(&headers, &body) {
        Ok(params) => facade.token(&params).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(doc) => no_store(StatusCode::OK, &doc),
        Err(e) => error_response(&e),
    }
}

async fn revoke(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(facade) = &app.facade else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let answer = match form(&headers, &body) {
        Ok(params) => facade.revoke(&params).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(()) => no_store(StatusCode::OK, &json!({})),
        Err(e) => error_response(&e),
    }
}
