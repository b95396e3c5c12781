//! # cortex-backend-axum
//!
//! Serves a [`cortex_backend::Backend`] from an axum app: the contract
//! endpoint (`POST /api/cortex/backend`) sits next to the app's own routes
//! and state, in one `merge`.
//!
//! The adapter only translates. It hands the dispatcher the HTTP method, the
//! `Authorization` and `Content-Type` headers and the body (read from the raw
//! stream up to [`Backend::body_limit`], whatever axum's `DefaultBodyLimit`
//! says), and writes back the status, the JSON body and `Allow`. Every rule
//! (405 on other methods, 413, 400 on a wrong content type, 401, 403, ...)
//! lives in `cortex-backend`, so this adapter and `cortex-backend-actix`
//! answer byte for byte the same. No axum rejection ever reaches the caller.
//!
//! ## An existing app plus the contract endpoint
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use axum::{Router, extract::State, routing::get};
//! use cortex_backend::{Auth, Backend, Ctx, ToolError, ToolFn};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! // The app's own state, used by its own routes and by the tools.
//! #[derive(Clone)]
//! struct AppState { greeting: Arc<String> }
//!
//! async fn home(State(app): State<AppState>) -> String {
//!     app.greeting.to_string()
//! }
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Greet { name: String }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Greeting { text: String }
//!
//! async fn greet(ctx: Ctx<AppState>, args: Greet) -> Result<Greeting, ToolError> {
//!     Ok(Greeting { text: format!("{}, {}", ctx.state().greeting, args.name) })
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let state = AppState { greeting: Arc::new("Hello".into()) };
//!     let backend = Backend::builder("greeter")
//!         .state(state.clone())
//!         .auth(Auth::from_env()?) // CORTEX_TECHNICAL_TOKENS, OAUTH_ISSUER, OAUTH_AUDIENCE, ...
//!         .tool(
//!             ToolFn::new("greet")
//!                 .scope("mcp:greeter:read")
//!                 .description("Greet someone by name.")
//!                 .handler(greet),
//!         )
//!         .build()?;
//!
//!     let app = Router::new()
//!         .route("/", get(home))                       // the app's own routes
//!         .merge(cortex_backend_axum::router(backend)) // + POST /api/cortex/backend
//!         .with_state(state);
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! Use [`router_at`] for another path, or [`handle`] inside a handler of
//! your own (behind your own middleware, for instance).
//!
//! ## Example
//!
//! `cargo run -p cortex-backend-axum --example axum_backend` starts a small
//! inventory backend and prints `listening on http://ADDR`; its docs list
//! the environment variables it reads.

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::any,
};
use cortex_backend::{Backend, READ_HEADERS, body::BodyCollector, contract::DEFAULT_PATH};
use futures::StreamExt;

/// The contract endpoint at [`DEFAULT_PATH`] (`/api/cortex/backend`), as a
/// router to [`Router::merge`] into an app with any state type `S`.
///
/// Every HTTP method on the path reaches the dispatcher, which answers 405
/// (JSON, with `Allow: POST`) to anything but POST.
pub fn router<S, T>(backend: Backend<T>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    router_at(backend, DEFAULT_PATH)
}

/// The contract endpoint at `path` (axum path syntax; it must start with `/`).
pub fn router_at<S, T>(backend: Backend<T>, path: &str) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    Router::new().route(
        path,
        any(move |request: Request| {
            let backend = backend.clone();
            async move { handle(&backend, request).await }
        }),
    )
}

/// Answers one request with the backend: the building block of [`router`],
/// for apps that route to the endpoint themselves.
pub async fn handle<T>(backend: &Backend<T>, request: Request) -> Response
where
    T: Send + Sync + 'static,
{
    let (parts, body) = request.into_parts();
    let mut collector = BodyCollector::new(backend.body_limit());
    let mut stream = body.into_data_stream();
    // A body that breaks off (client gone, bad chunking) ends here; what
    // arrived is judged by the dispatcher like any other body.
    while let Some(Ok(chunk)) = stream.next().await {
        if !collector.push(chunk) {
            break;
        }
    }
    let mut core = cortex_backend::Request::new(parts.method.as_str(), collector.finish());
    copy_headers(&parts.headers, &mut core);
    into_axum(backend.handle(core).await)
}

fn copy_headers(headers: &HeaderMap, request: &mut cortex_backend::Request) {
    for name in READ_HEADERS {
        if let Some(value) = headers.get(name) {
            request.push_header(name, String::from_utf8_lossy(value.as_bytes()));
        }
    }
}

fn into_axum(response: cortex_backend::Response) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = (status, Body::from(response.body)).into_response();
    let headers = out.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(cortex_backend::Response::CONTENT_TYPE),
    );
    if let Some(allow) = response.allow {
        headers.insert(
            HeaderName::from_static("allow"),
            HeaderValue::from_static(allow),
        );
    }
    out
}
