//! # cortex-backend
//!
//! The SDK for Cortex backends: a department app declares tools from plain
//! Rust types and gets one POST endpoint that speaks the Cortex backend
//! contract exactly (`contract.md`, version 1), with real JWT validation,
//! without touching HTTP. A Cortex gateway federates many such backends into
//! one OAuth-protected MCP server.
//!
//! ## A complete backend
//!
//! ```
//! use cortex_backend::{Backend, Ctx, Help, Request, ToolError, ToolFn, tool};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! struct Crm { accounts: Vec<(String, String)> } // (name, owning team)
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Search {
//!     /// Free text matched against the account name.
//!     query: String,
//!     /// At most this many results (default 20).
//!     limit: Option<u32>,
//! }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Accounts { accounts: Vec<String> }
//!
//! /// Search the accounts of the caller's team.
//! #[tool(scope = "mcp:crm:read", read_only)]
//! async fn search_accounts(ctx: Ctx<Crm>, args: Search) -> Result<Accounts, ToolError> {
//!     let team = ctx.caller().role.clone().unwrap_or_default(); // the app's own rule
//!     let accounts = ctx.state().accounts.iter()
//!         .filter(|(name, owner)| *owner == team && name.contains(&args.query))
//!         .take(args.limit.unwrap_or(20) as usize)
//!         .map(|(name, _)| name.clone())
//!         .collect();
//!     Ok(Accounts { accounts })
//! }
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct LogCall { account: String, summary: String }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Logged { id: u64 }
//!
//! async fn log_call(ctx: Ctx<Crm>, args: LogCall) -> Result<Logged, ToolError> {
//!     if !ctx.state().accounts.iter().any(|(n, _)| *n == args.account) {
//!         return Err(ToolError::not_found(format!("no account named {}", args.account)));
//!     }
//!     Ok(Logged { id: 1 })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = Backend::builder("crm")
//!     .state(Crm { accounts: vec![("Acme".into(), "north".into())] })
//!     // .auth(cortex_backend::Auth::from_env()?)   // technical token + issuer/audience/JWKS
//!     .tool(search_accounts)                                              // with the attribute
//!     .tool(                                                              // without
//!         ToolFn::new("log_call")
//!             .scope("mcp:crm:write")
//!             .description("Log a call on an account.")
//!             .handler(log_call),
//!     )
//!     .help(Help::new("The CRM of the sales teams.").workflow("Follow up", ["search_accounts", "log_call"]))
//!     .build()?;
//!
//! // Any HTTP stack can serve it: hand the dispatcher the method, headers and body.
//! let response = backend
//!     .handle(Request::post(r#"{"method":"list_tools"}"#).header("content-type", "application/json"))
//!     .await;
//! assert_eq!(response.status, 401); // no token: the contract requires one
//! # Ok(()) }
//! ```
//!
//! Serve it with `cortex-backend-axum` (`Router::merge(cortex_backend_axum::router(backend))`)
//! or `cortex-backend-actix` (`App::configure(cortex_backend_actix::configure(backend))`).
//!
//! ## What the SDK does for you
//!
//! * **Schemas**: the input schema comes from the argument type and the
//!   output schema from the result type, through schemars with settings MCP
//!   clients accept: inlined (no `$ref`/`$defs`), no `$schema`, standard
//!   formats only, root `"type": "object"`. An argument type that cannot give
//!   an object schema makes `build()` fail with the tool's name.
//! * **Auth** ([`Auth`]): technical tokens (constant-time, several for
//!   rotation) for the discovery methods only; user JWTs checked for
//!   signature (JWKS discovered from the issuer, a URL, or static keys),
//!   `iss`, `aud`, `exp`, `nbf` when present, header `typ`, with algorithms
//!   from configuration only (settings shared with the gateway: [`auth::JwtSettings`]).
//!   Verified tokens are cached until they expire, in a bounded cache.
//!   Behind a gateway in `assert` mode, `CORTEX_GATEWAY_ISSUER` makes the
//!   backend trust only the gateway's signed assertions (`act.sub` = the
//!   gateway, for the backend's own audience), never a caller's own token;
//!   [`Caller::actor`] then names the gateway ([`auth::GATEWAY_SETTINGS`]).
//! * **The dispatcher** ([`Backend::handle`]): body limit (1 MiB, 413),
//!   malformed JSON (400), non-object `params` (400), unknown method (400
//!   `unknown_method`), technical token outside discovery (403), scope
//!   re-check (403 with `required`), argument errors (400 naming the JSON
//!   path), [`ToolError`] statuses, panics caught (500 without internals).
//! * **`get_help`** ([`Help`]) listed as a tool, and a default `whoami`.
//! * **Optional methods**: prompts, resource templates with `read_resource`,
//!   `get_snapshot`, tickets; rich MCP results through [`McpResult`].
//!
//! ## Scopes
//!
//! `mcp:<domain>:write` satisfies `mcp:<domain>:read` ([`scopes::satisfies`]),
//! the same rule the gateway applies. Nothing else implies anything.
//!
//! ## Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `testing` | [`testing::TestIssuer`]: a local issuer (JWKS on loopback) minting valid and broken tokens |

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
mod backend;
pub mod body;
pub mod contract;
mod dispatch;
mod error;
mod help;
pub mod params;
mod rich;
pub mod schema;
pub mod scopes;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
mod tool;
mod trace;

pub use auth::{Auth, AuthConfig, Caller};
pub use backend::{Backend, BackendBuilder, BuildError, DEFAULT_BODY_LIMIT};
pub use cortex_backend_macros::tool;
pub use dispatch::{READ_HEADERS, Request, RequestBody, Response};
pub use error::ToolError;
pub use help::{Help, TOPICS};
pub use rich::McpResult;
pub use tool::{BoxFuture, Ctx, Tool, ToolFn, ToolHandler, ToolOutput};
