//! The `http` layer: the listener and its serving threads, connection
//! limits, the request checks (audit scope, `Origin`/`Host`/CORS, header
//! size, deadline), admission (authentication, rate budget, revocation),
//! and the routes: `POST`/`GET`/`DELETE` on the MCP path (handed to the
//! [`mcp`](crate::mcp) layer once the caller is admitted), the RFC 9728
//! metadata, `/healthz` and `/readyz`, the account-linking pages
//! (`/link/…`), the OAuth facade's endpoints, and the operator endpoints.

pub(crate) mod admin;
pub(crate) mod admin_page;
mod admit;
pub(crate) mod facade;
mod front;
pub(crate) mod link;
pub(crate) mod origin;
mod perimeter;
mod rejection;
mod serve;
mod watch;

pub(crate) use admit::Admission;
pub(crate) use front::ConnectionServices;
pub(crate) use perimeter::{Limits, RequestChecks};
pub(crate) use serve::{Workers, run as serve};
pub(crate) use watch::ConnectionLimits;

use std::sync::Arc;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderMap, StatusCode},
    middleware::from_fn_with_state,
    response::{IntoResponse, Response},
    routing::get,
};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::{
    facade::Facade,
    keys::SigningKeys,
    link::Accounts,
    mcp::{self, envelope::json_response},
};
use rejection::Rejection;

/// What the routes of a gateway work with.
pub(crate) struct App {
    /// The MCP layer.
    pub(crate) mcp: mcp::Service,
    /// Authentication, budgets, revocation.
    pub(crate) admission: Admission,
    /// The checks every request passes.
    pub(crate) checks: Arc<RequestChecks>,
    /// The MCP path (`/` when the canonical URI has none).
    pub(crate) mcp_path: String,
    /// Limit on a request body.
    pub(crate) max_request_bytes: usize,
    /// Linked third-party accounts (the link pages).
    pub(crate) accounts: Arc<Accounts>,
    /// The gateway's signing keys (published at `/.well-known/jwks.json`).
    pub(crate) keys: Arc<SigningKeys>,
    /// The OAuth facade, when the gateway is the agents' authorization
    /// server (`CORTEX_OAUTH_FACADE`).
    pub(crate) facade: Option<Arc<Facade>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("mcp", &self.mcp)
            .field("mcp_path", &self.mcp_path)
            .finish_non_exhaustive()
    }
}

/// The router of a gateway: its own routes plus `extra` (the operator
/// endpoints), every route behind the request checks.
pub(crate) fn router(app: Arc<App>, extra: Router) -> Router {
    let path = app.mcp_path.clone();
    let checks = app.checks.clone();
    let mut router = Router::new()
        .route(
            &path,
            axum::routing::post(post_mcp)
                .get(get_mcp)
                .delete(delete_mcp),
        )
        .route("/.well-known/oauth-protected-resource", get(metadata))
        .route(JWKS_PATH, get(jwks))
        .route("/.well-known/mcp/server-card.json", get(server_card))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    // Where a verifier looks when the gateway's issuer has a path.
    let issuer_path = app.keys.issuer_path().to_string();
    if !issuer_path.is_empty() && issuer_path != path {
        router = router.route(&format!("{issuer_path}{JWKS_PATH}"), get(jwks));
    }
    if path != "/" {
        router = router.route(
            &format!("/.well-known/oauth-protected-resource{path}"),
            get(metadata),
        );
    }
    let limit = app.max_request_bytes;
    let link = link::router(app.accounts.clone());
    router
        .layer(DefaultBodyLimit::max(limit))
        .merge(facade::router(&app))
        .with_state(app)
        .merge(link)
        .merge(extra)
        .layer(from_fn_with_state(checks, perimeter::layer))
}

async fn metadata(State(app): State<Arc<App>>) -> Response {
    let scopes = app.admission.catalog_scopes();
    json_response(StatusCode::OK, &app.admission.auth.metadata(scopes))
}

/// The MCP server card, from the configuration (public, like the
/// protected-resource metadata).
async fn server_card(State(app): State<Arc<App>>) -> Response {
    json_response(StatusCode::OK, &mcp::methods::server_card(&app.mcp))
}

/// Where the gateway's public keys are served.
const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The gateway's public signing keys (RFC 7517 JWK Set).
async fn jwks(State(app): State<Arc<App>>) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/jwk-set+json"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=60"),
        ],
        app.keys.jwks(),
    )
        .into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if !app.mcp.sessions.reachable().await {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the shared store (CORTEX_STORE) cannot be reached",
        )
            .into_response()
    } else if app.mcp.catalog.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first catalog refresh is running",
        )
            .into_response()
    }
}

async fn post_mcp(State(app): State<Arc<App>>, request: Request) -> Response {
    post_mcp_on(&app, request).await
}

/// `POST` on the MCP path, borrowing the gateway (the served hot path
/// calls this directly, so no reference count shared by every serving
/// thread is written per request).
pub(crate) async fn post_mcp_on(app: &App, request: Request) -> Response {
    // Taken apart rather than extracted: the `HeaderMap` extractor clones
    // every header, and the body is read only once the caller is admitted.
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let mut trace = crate::telemetry::RequestTrace::begin(&headers);
    let admitted = app.admission.admit(&headers).await;
    trace.authenticated();
    let caller = match admitted {
        Ok(c) => c,
        Err(r) => {
            let response = r.into_response();
            trace.refused(response.status().as_u16());
            return response;
        }
    };
    let body = match read_body(body, app.max_request_bytes).await {
        Ok(b) => b,
        Err(r) => {
            let response = r.into_response();
            trace.refused(response.status().as_u16());
            return response;
        }
    };
    mcp::endpoint::post(&app.mcp, headers, caller, body, trace).await
}

async fn get_mcp(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match app.admission.admit(&headers).await {
        Ok(caller) => mcp::endpoint::get(&app.mcp, &headers, &caller).await,
        Err(r) => r.into_response(),
    }
}

async fn delete_mcp(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match app.admission.admit(&headers).await {
        Ok(caller) => mcp::endpoint::delete(&app.mcp, &headers, &caller).await,
        Err(r) => r.into_response(),
    }
}

/// The whole request body, at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Rejection> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Rejection::BodyTooLarge { limit }),
        Err(e) => Err(Rejection::BodyUnreadable(e.to_string())),
    }
}
