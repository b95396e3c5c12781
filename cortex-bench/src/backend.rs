//! The `backend` role: SDK backends with trivial read tools, served by a
//! minimal hyper server (no framework), plus one path that never answers.
//!
//! Backend `i` lives at `/b<i>/api/cortex/backend`; `/hung/api/cortex/backend`
//! reads the request and then holds the connection forever (the "hung
//! backend" of the refresh scenario).
//!
//! Every backend's second tool, [`SLOW_TOOL`], answers after [`SLOW_MS`]
//! (a call a client can hang up on), and its third, [`WRITE_TOOL`], is a
//! destructive tool under [`WRITE_SCOPE`]; the others are instant reads.

use std::{collections::HashMap, convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use cortex_backend::{
    Auth, AuthConfig, Backend, Ctx, RequestBody, ToolError, ToolFn,
    auth::{JwtConfig, KeySource},
    contract::DEFAULT_PATH,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode, body::Incoming, header};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The one scope every benchmark tool requires (and every bench token holds).
pub(crate) const SCOPE: &str = "mcp:bench:read";
/// The path prefix of the hung backend.
pub(crate) const HUNG_PREFIX: &str = "/hung";
/// The name of the trivial read tool every backend has.
pub(crate) const READ_TOOL: &str = "read_item";
/// The read tool that answers after [`SLOW_MS`].
pub(crate) const SLOW_TOOL: &str = "slow_item";
/// How long [`SLOW_TOOL`] takes.
pub(crate) const SLOW_MS: u64 = 300;
/// The write tool.
pub(crate) const WRITE_TOOL: &str = "write_item";
/// The scope of [`WRITE_TOOL`] (every bench token holds it too).
pub(crate) const WRITE_SCOPE: &str = "mcp:bench:write";

/// How the backend process trusts tokens.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TrustArgs {
    /// The issuer (`iss`) of user tokens.
    #[arg(long)]
    pub(crate) issuer: String,
    /// The issuer's JWKS URL.
    #[arg(long)]
    pub(crate) jwks_url: String,
    /// The audience user tokens must carry.
    #[arg(long)]
    pub(crate) audience: String,
    /// The technical token the gateway uses for discovery.
    #[arg(long)]
    pub(crate) technical_token: String,
}

/// Options of `role backend`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BackendArgs {
    /// How many backends this process serves (`/b0` .. `/b<n-1>`).
    #[arg(long, default_value_t = 1)]
    pub(crate) backends: usize,
    /// Tools per backend (the first is `read_item`).
    #[arg(long, default_value_t = 10)]
    pub(crate) tools: usize,
    #[command(flatten)]
    pub(crate) trust: TrustArgs,
}

/// Arguments of the read tools.
#[derive(Deserialize, JsonSchema)]
struct ItemQuery {
    /// The item's id.
    id: String,
    /// Include the item's tags.
    verbose: Option<bool>,
}

/// What the read tools return.
#[derive(Serialize, JsonSchema)]
struct Item {
    id: String,
    name: String,
    tags: Vec<String>,
}

async fn read_item(_ctx: Ctx<()>, args: ItemQuery) -> Result<Item, ToolError> {
    let tags = if args.verbose.unwrap_or(false) {
        vec!["bench".into(), "fixture".into()]
    } else {
        Vec::new()
    };
    Ok(Item {
        name: format!("Item {}", args.id),
        id: args.id,
        tags,
    })
}

async fn slow_item(ctx: Ctx<()>, args: ItemQuery) -> Result<Item, ToolError> {
    tokio::time::sleep(std::time::Duration::from_millis(SLOW_MS)).await;
    read_item(ctx, args).await
}

/// Arguments of the write tool.
#[derive(Deserialize, JsonSchema)]
struct ItemUpdate {
    /// The item's id.
    id: String,
    /// Its new name.
    name: String,
}

async fn write_item(_ctx: Ctx<()>, args: ItemUpdate) -> Result<Item, ToolError> {
    Ok(Item {
        id: args.id,
        name: args.name,
        tags: Vec::new(),
    })
}

/// Builds backend `id` with `tools` tools (at least the read tool; the slow
/// and the write tool from three on) trusting `trust`.
pub(crate) fn build_backend(
    id: &str,
    tools: usize,
    trust: &TrustArgs,
) -> anyhow::Result<Backend<()>> {
    let mut jwt = JwtConfig::new(trust.issuer.clone(), vec![trust.audience.clone()]);
    jwt.keys = KeySource::JwksUrl(trust.jwks_url.clone());
    let auth = Auth::new(AuthConfig {
        technical_tokens: vec![trust.technical_token.clone()],
        jwt: Some(jwt),
    })?;
    // Only the bench's tools in the catalog, so the tool counts are exact.
    let mut builder = Backend::builder(id).auth(auth).list_help_as_tool(false);
    for k in 0..tools.max(1) {
        let description = |what: &str| {
            format!(
                "{what} of collection {k} of backend {id} by its id; returns its name and, when verbose, its tags."
            )
        };
        let tool = |name: &str, scope: &str, what: &str| {
            ToolFn::new(name)
                .scope(scope)
                .description(description(what))
        };
        builder = builder.tool(match k {
            0 => tool(READ_TOOL, SCOPE, "Read one item").handler(read_item),
            1 => tool(SLOW_TOOL, SCOPE, "Read one item slowly").handler(slow_item),
            2 => tool(WRITE_TOOL, WRITE_SCOPE, "Rename one item")
                .handler(write_item)
                .destructive(),
            _ => tool(&format!("read_item_{k}"), SCOPE, "Read one item").handler(read_item),
        });
    }
    Ok(builder.build()?)
}

type Backends = Arc<HashMap<String, Backend<()>>>;

/// Runs the role: binds loopback, prints `listening on http://ADDR`, serves.
pub(crate) async fn run(args: BackendArgs) -> anyhow::Result<()> {
    let mut map = HashMap::new();
    for i in 0..args.backends {
        let backend = build_backend(&format!("b{i}"), args.tools, &args.trust)?;
        map.insert(format!("/b{i}{DEFAULT_PATH}"), backend);
    }
    let backends: Backends = Arc::new(map);
    let handler = move |request| {
        let backends = backends.clone();
        async move { Ok::<_, Infallible>(answer(&backends, request).await) }
    };
    crate::serve::serve_loopback(crate::serve::Threads::Shared, move || handler.clone()).await
}

async fn answer(backends: &Backends, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    if path.starts_with(HUNG_PREFIX) {
        // Read the request, then never answer: the caller's timeout must end it.
        let _ = request.into_body().collect().await;
        return std::future::pending().await;
    }
    let Some(backend) = backends.get(&path) else {
        return json_response(
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"error":"no backend at this path"}"#),
        );
    };
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, backend.body_limit()).collect().await {
        Ok(collected) => RequestBody::Complete(collected.to_bytes()),
        Err(_) => RequestBody::TooLarge,
    };
    let mut core = cortex_backend::Request::new(parts.method.as_str(), body);
    for name in cortex_backend::READ_HEADERS {
        if let Some(value) = parts.headers.get(name) {
            core.push_header(name, String::from_utf8_lossy(value.as_bytes()));
        }
    }
    let reply = backend.handle(core).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, reply.body);
    if let Some(allow) = reply.allow {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    }
    response
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The base URL of backend `i` in a process listening on `addr`.
pub(crate) fn base_url(addr: SocketAddr, i: usize) -> String {
    format!("http://{addr}/b{i}")
}
