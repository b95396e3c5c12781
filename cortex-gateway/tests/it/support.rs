//! The test world: a local issuer, SDK backends served over loopback by a
//! minimal axum wrapper (switchable up / down / hung, swappable catalog),
//! and a gateway in front of them.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use cortex_backend::{
    Auth, Backend, Ctx, McpResult, Request, RequestBody, ToolError, ToolFn,
    contract::{
        GetPromptResult, PromptArgument, PromptDescriptor, ReadResourceResult, ResourceContent,
        ResourceTemplate,
    },
    testing::TestIssuer,
};
use cortex_gateway::{
    Gateway,
    config::{BackendConfig, GatewayConfig},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub(crate) mod idp;

pub(crate) const TECH: &str = "technical-token-for-the-tests-0123456789";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Mode {
    Up = 0,
    /// Answers 503 to everything.
    Down = 1,
}

struct BackendState {
    backend: RwLock<Backend>,
    mode: AtomicU8,
    /// The `X-Cortex-User-Id` headers of user calls, in order.
    seen_users: Mutex<Vec<String>>,
    /// Every header of the last user call, as received.
    last_headers: Mutex<HeaderMap>,
}

/// An SDK backend on a loopback port.
pub(crate) struct BackendServer {
    pub(crate) url: String,
    state: Arc<BackendState>,
    task: JoinHandle<()>,
}

impl Drop for BackendServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn contract_endpoint(
    State(state): State<Arc<BackendState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.mode.load(Ordering::SeqCst) == Mode::Down as u8 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/json")],
            r#"{"error":"down for maintenance"}"#,
        )
            .into_response();
    }
    if let Some(user) = headers
        .get("x-cortex-user-id")
        .and_then(|v| v.to_str().ok())
    {
        state.seen_users.lock().unwrap().push(user.to_string());
        *state.last_headers.lock().unwrap() = headers.clone();
    }
    let mut request = Request::new("POST", RequestBody::Complete(body));
    for name in cortex_backend::READ_HEADERS {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            request.push_header(name, v);
        }
    }
    let backend = state.backend.read().unwrap().clone();
    let response = backend.handle(request).await;
    (
        StatusCode::from_u16(response.status).unwrap(),
        [("content-type", "application/json")],
        response.body,
    )
        .into_response()
}

impl BackendServer {
    pub(crate) async fn start(backend: Backend) -> Self {
        let state = Arc::new(BackendState {
            backend: RwLock::new(backend),
            mode: AtomicU8::new(Mode::Up as u8),
            seen_users: Mutex::new(Vec::new()),
            last_headers: Mutex::new(HeaderMap::new()),
        });
        let router = axum::Router::new()
            .route(
                "/api/cortex/backend",
                axum::routing::post(contract_endpoint),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, state, task }
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub(crate) fn replace(&self, backend: Backend) {
        *self.state.backend.write().unwrap() = backend;
    }

    pub(crate) fn seen_users(&self) -> Vec<String> {
        self.state.seen_users.lock().unwrap().clone()
    }

    /// Every header of the last user call, as received.
    pub(crate) fn last_headers(&self) -> HeaderMap {
        self.state.last_headers.lock().unwrap().clone()
    }
}

/// A TCP server that accepts connections and never answers.
/// A TLS acceptor serving `cert_pem` with `key_pem`, offering `alpn`.
pub(crate) fn tls_acceptor(
    cert_pem: &[u8],
    key_pem: &[u8],
    alpn: &[&[u8]],
) -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    };
    let cert = CertificateDer::from_pem_slice(cert_pem).unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

pub(crate) async fn hung_server() -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

/// A backend answering list_tools with a body of `bytes` bytes.
pub(crate) async fn huge_server(bytes: usize) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body: String = format!("{{\"tools\":[],\"pad\":\"{}\"}}", "x".repeat(bytes));
    let router = axum::Router::new().route(
        "/api/cortex/backend",
        axum::routing::post(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, task)
}

// ----- the two department apps -----

#[derive(Deserialize, JsonSchema)]
pub(crate) struct Query {
    /// Words to look for.
    pub(crate) query: String,
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct NoArgs {}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Accounts {
    pub(crate) accounts: Vec<String>,
    /// Who asked (the backend's view of the caller).
    pub(crate) caller: String,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Logged {
    pub(crate) logged: bool,
    pub(crate) by: String,
}

async fn search_accounts(ctx: Ctx<()>, args: Query) -> Result<Accounts, ToolError> {
    Ok(Accounts {
        accounts: vec![format!("Acme ({})", args.query)],
        caller: ctx.caller().sub.clone(),
    })
}

async fn log_call(ctx: Ctx<()>, _args: Query) -> Result<Logged, ToolError> {
    Ok(Logged {
        logged: true,
        by: ctx.caller().sub.clone(),
    })
}

async fn managers_only(ctx: Ctx<()>, _args: NoArgs) -> Result<Logged, ToolError> {
    if ctx.caller().role.as_deref() != Some("manager") {
        return Err(ToolError::denied("only managers may see the forecast"));
    }
    Ok(Logged {
        logged: true,
        by: ctx.caller().sub.clone(),
    })
}

async fn export_all(ctx: Ctx<()>, _args: NoArgs) -> Result<Logged, ToolError> {
    ctx.require_scope("mcp:crm:admin")?;
    Ok(Logged {
        logged: true,
        by: ctx.caller().sub.clone(),
    })
}

async fn chart(_ctx: Ctx<()>, _args: NoArgs) -> Result<McpResult, ToolError> {
    Ok(McpResult::new()
        .text("Here is the pipeline chart.")
        .image([0x89, b'P', b'N', b'G'], "image/png")
        .resource_link("crm://account/1", "Acme"))
}

async fn count(_ctx: Ctx<()>, _args: NoArgs) -> Result<u32, ToolError> {
    Ok(42)
}

async fn boom(_ctx: Ctx<()>, _args: NoArgs) -> Result<u32, ToolError> {
    Err(ToolError::internal("database exploded with secret details"))
}

pub(crate) fn crm(issuer: &TestIssuer, audience: &str) -> Backend {
    Backend::builder("crm")
        .auth(Auth::new(issuer.auth_config(audience, &[TECH])).unwrap())
        .tool(
            ToolFn::new("search_accounts")
                .scope("mcp:crm:read")
                .description("Search accounts by name.")
                .handler(search_accounts),
        )
        .tool(
            ToolFn::new("log_call")
                .scope("mcp:crm:write")
                .description("Log a call on an account.")
                .handler(log_call),
        )
        .tool(
            ToolFn::new("forecast")
                .scope("mcp:crm:read")
                .description("The sales forecast (managers only).")
                .handler(managers_only),
        )
        .tool(
            ToolFn::new("export_all")
                .scope("mcp:crm:read")
                .description("Export every account (needs admin).")
                .handler(export_all),
        )
        .tool(
            ToolFn::new("pipeline_chart")
                .scope("mcp:crm:read")
                .description("A chart of the pipeline.")
                .handler(chart),
        )
        .tool(
            ToolFn::new("count_accounts")
                .scope("mcp:crm:read")
                .description("How many accounts exist.")
                .handler(count),
        )
        .tool(
            ToolFn::new("broken_report")
                .scope("mcp:crm:read")
                .description("A report that always fails.")
                .handler(boom),
        )
        .prompt(
            PromptDescriptor {
                name: "follow_up".into(),
                description: "Draft a follow-up for an account.".into(),
                arguments: Some(vec![PromptArgument {
                    name: "account".into(),
                    description: Some("Account name".into()),
                    required: Some(true),
                }]),
                scope: "mcp:crm:read".into(),
            },
            |_ctx, args: BTreeMap<String, String>| async move {
                Ok(GetPromptResult {
                    description: Some("Follow-up".into()),
                    messages: vec![cortex_backend::contract::PromptMessage::user(format!(
                        "Write a follow-up to {}",
                        args.get("account").cloned().unwrap_or_default()
                    ))],
                })
            },
        )
        .resource_template(
            ResourceTemplate {
                uri_template: "crm://account/{id}".into(),
                name: "Account".into(),
                description: Some("One account as JSON".into()),
                mime_type: Some("application/json".into()),
                scope: "mcp:crm:read".into(),
            },
            |_ctx, uri, vars: BTreeMap<String, String>| async move {
                if vars.get("id").map(String::as_str) == Some("404") {
                    return Err(ToolError::not_found("no such account"));
                }
                Ok(ReadResourceResult {
                    contents: vec![ResourceContent {
                        uri,
                        mime_type: "application/json".into(),
                        text: Some(json!({"id": vars.get("id")}).to_string()),
                        blob: None,
                    }],
                })
            },
        )
        .build()
        .unwrap()
}

async fn search_docs(ctx: Ctx<()>, args: Query) -> Result<Value, ToolError> {
    Ok(json!({"hits": [format!("doc about {}", args.query)], "sub": ctx.caller().sub}))
}

async fn slow_doc(_ctx: Ctx<()>, _args: NoArgs) -> Result<u32, ToolError> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(1)
}

async fn summarize(_ctx: Ctx<()>, _args: Query) -> Result<String, ToolError> {
    Ok("a summary".into())
}

pub(crate) fn docs(issuer: &TestIssuer, audience: &str, with_summarize: bool) -> Backend {
    let mut b = Backend::builder("docs")
        .auth(Auth::new(issuer.auth_config(audience, &[TECH])).unwrap())
        .tool(
            ToolFn::new("search")
                .scope("mcp:docs:read")
                .description("Search documents by words.")
                .handler(search_docs),
        )
        .tool(
            ToolFn::new("slow_export")
                .scope("mcp:docs:read")
                .description("An export that takes long.")
                .handler(slow_doc),
        );
    if with_summarize {
        b = b.tool(
            ToolFn::new("summarize")
                .scope("mcp:docs:read")
                .description("Summarize a document.")
                .handler(summarize),
        );
    }
    b.build().unwrap()
}

// ----- the world -----

pub(crate) struct World {
    pub(crate) issuer: TestIssuer,
    pub(crate) crm: BackendServer,
    pub(crate) docs: BackendServer,
    pub(crate) gateway: Gateway,
    /// The canonical MCP URL (also the token audience).
    pub(crate) url: String,
    pub(crate) addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), cortex_gateway::GatewayError>>>,
    _extra: Vec<JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

/// A last change to a test gateway's configuration.
pub(crate) type Configure = Box<dyn FnOnce(&mut GatewayConfig) + Send>;

pub(crate) struct Options {
    pub(crate) required_scopes: Vec<String>,
    pub(crate) extra: Vec<BackendConfig>,
    pub(crate) docs_timeout_ms: u64,
    pub(crate) extra_tasks: Vec<JoinHandle<()>>,
    /// Changes the configuration last, before the gateway is built.
    pub(crate) configure: Option<Configure>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            required_scopes: Vec::new(),
            extra: Vec::new(),
            docs_timeout_ms: 1_000,
            extra_tasks: Vec::new(),
            configure: None,
        }
    }
}

impl World {
    pub(crate) async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub(crate) async fn start_with(options: Options) -> Self {
        let issuer = TestIssuer::start().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}/mcp");
        let crm = BackendServer::start(crm(&issuer, &url)).await;
        let docs = BackendServer::start(docs(&issuer, &url, false)).await;
        let mut config = GatewayConfig::new(url.clone(), issuer.issuer(), TECH);
        config.oauth.jwks_url = Some(issuer.jwks_url());
        config.required_scopes = options.required_scopes;
        config.keep_alive_s = 1;
        config.backends.push(BackendConfig::new("crm", &crm.url));
        let mut d = BackendConfig::new("docs", &docs.url);
        d.timeout_ms = options.docs_timeout_ms;
        config.backends.push(d);
        config.backends.extend(options.extra);
        if let Some(configure) = options.configure {
            configure(&mut config);
        }
        let gateway = Gateway::new(config).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(gateway.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        gateway.wait_ready().await.unwrap();
        Self {
            issuer,
            crm,
            docs,
            gateway,
            url,
            addr,
            shutdown: Some(tx),
            server: Some(server),
            _extra: options.extra_tasks,
        }
    }

    /// A token for this gateway with `sub` and scopes.
    pub(crate) fn token(&self, sub: &str, scopes: &[&str]) -> String {
        self.issuer
            .token(&self.url)
            .sub(sub)
            .email(&format!("{sub}@example.com"))
            .scopes(scopes.iter().copied())
            .mint()
    }

    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the gateway gracefully and waits for it.
    pub(crate) async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("the gateway stops within 10 s")
                .unwrap()
                .unwrap();
        }
    }
}
