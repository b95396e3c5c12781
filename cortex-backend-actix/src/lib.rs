//! # cortex-backend-actix
//!
//! Serves a [`cortex_backend::Backend`] from an actix-web app: the contract
//! endpoint (`POST /api/cortex/backend`) sits next to the app's own
//! services and `app_data`, in one `App::configure`.
//!
//! The adapter only translates. It hands the dispatcher the HTTP method, the
//! `Authorization` and `Content-Type` headers and the body, read from the raw
//! payload stream up to [`Backend::body_limit`] (so actix's 256 KiB
//! `PayloadConfig` default and its 400 on a wrong content type never apply),
//! and writes back the status, the JSON body and `Allow`. Every rule (405 on
//! other methods, 413, 400 on a wrong content type, 401, 403, ...) lives in
//! `cortex-backend`, so this adapter and `cortex-backend-axum` answer byte
//! for byte the same.
//!
//! ## An existing app plus the contract endpoint
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use actix_web::{App, HttpServer, Responder, get, web};
//! use cortex_backend::{Auth, Backend, Ctx, ToolError, ToolFn};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! // The app's own state, used by its own services and by the tools.
//! #[derive(Clone)]
//! struct AppState { greeting: Arc<String> }
//!
//! #[get("/")]
//! async fn home(app: web::Data<AppState>) -> impl Responder {
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
//! #[actix_web::main]
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
//!     HttpServer::new(move || {
//!         App::new()
//!             .app_data(web::Data::new(state.clone()))
//!             .service(home)                                             // the app's own services
//!             .configure(cortex_backend_actix::configure(backend.clone())) // + POST /api/cortex/backend
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await?;
//!     Ok(())
//! }
//! ```
//!
//! Use [`configure_at`] for another path, [`resource`] / [`resource_at`] to
//! place the endpoint inside a `web::scope`, or [`handle`] inside a handler
//! of your own.
//!
//! ## Example
//!
//! `cargo run -p cortex-backend-actix --example actix_backend` starts a small
//! room-booking backend and prints `listening on http://ADDR`; its docs list
//! the environment variables it reads.

use actix_web::{
    HttpRequest, HttpResponse, Resource,
    http::{
        StatusCode,
        header::{self, HeaderValue},
    },
    web,
};
use cortex_backend::{Backend, READ_HEADERS, body::BodyCollector, contract::DEFAULT_PATH};
use futures::StreamExt;

/// The contract endpoint at [`DEFAULT_PATH`] (`/api/cortex/backend`), for
/// `App::configure` (or `Scope::configure`).
///
/// Every HTTP method on the path reaches the dispatcher, which answers 405
/// (JSON, with `Allow: POST`) to anything but POST.
pub fn configure<T>(backend: Backend<T>) -> impl Fn(&mut web::ServiceConfig) + Clone
where
    T: Send + Sync + 'static,
{
    configure_at(backend, DEFAULT_PATH)
}

/// The contract endpoint at `path`.
pub fn configure_at<T>(backend: Backend<T>, path: &str) -> impl Fn(&mut web::ServiceConfig) + Clone
where
    T: Send + Sync + 'static,
{
    let path = path.to_string();
    move |config: &mut web::ServiceConfig| {
        config.service(resource_at(backend.clone(), &path));
    }
}

/// The contract endpoint at [`DEFAULT_PATH`] as a `Resource`, for
/// `App::service` or `Scope::service`.
pub fn resource<T>(backend: Backend<T>) -> Resource
where
    T: Send + Sync + 'static,
{
    resource_at(backend, DEFAULT_PATH)
}

/// The contract endpoint at `path` as a `Resource` (relative to the
/// enclosing scope, if any).
pub fn resource_at<T>(backend: Backend<T>, path: &str) -> Resource
where
    T: Send + Sync + 'static,
{
    web::resource(path).route(web::route().to(
        move |request: HttpRequest, payload: web::Payload| {
            let backend = backend.clone();
            async move { handle(&backend, &request, payload).await }
        },
    ))
}

/// Answers one request with the backend: the building block of
/// [`configure`], for apps that route to the endpoint themselves.
pub async fn handle<T>(
    backend: &Backend<T>,
    request: &HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse
where
    T: Send + Sync + 'static,
{
    let mut collector = BodyCollector::new(backend.body_limit());
    // A body that breaks off (client gone, bad chunking) ends here; what
    // arrived is judged by the dispatcher like any other body.
    while let Some(Ok(chunk)) = payload.next().await {
        if !collector.push(chunk) {
            break;
        }
    }
    let mut core = cortex_backend::Request::new(request.method().as_str(), collector.finish());
    for name in READ_HEADERS {
        if let Some(value) = request.headers().get(name) {
            core.push_header(name, String::from_utf8_lossy(value.as_bytes()));
        }
    }
    into_actix(backend.handle(core).await)
}

fn into_actix(response: cortex_backend::Response) -> HttpResponse {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = HttpResponse::build(status);
    out.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static(cortex_backend::Response::CONTENT_TYPE),
    ));
    if let Some(allow) = response.allow {
        out.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
    }
    out.body(response.body)
}
