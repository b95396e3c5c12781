//! The tracker: a third-party issue tracker Meridian's people use, with a
//! native MCP server and an authorization server of its own, as a SaaS
//! would ship it. It is built with the official Rust MCP SDK (`rmcp`)
//! over Streamable HTTP (stateless, JSON answers), and is an OAuth
//! resource server:
//!
//! | endpoint | what |
//! |---|---|
//! | `POST /mcp` | the MCP server: [`issues`] (`whoami`, `list_issues`, `create_issue`) |
//! | `GET /.well-known/oauth-protected-resource/mcp` (and without `/mcp`) | RFC 9728 metadata naming its authorization server |
//!
//! Discovery (`initialize`, `server/discover`, `tools/list`) is open, as
//! many SaaS servers do, so the gateway lists the tools without anyone's
//! account. Every other MCP request needs `Authorization: Bearer` with a
//! token of the tracker's own authorization server (a [`Realm::Tracker`] instance of
//! [`crate::issuer`], its own issuer and port) whose audience is the
//! tracker's URL. The tracker asks that server about each token (RFC 7662
//! introspection), so a revoked grant stops working at once; anything else
//! (no token, a token of Meridian's own issuer, the gateway's, another
//! audience) gets `401` with `WWW-Authenticate: Bearer resource_metadata=…`,
//! which is how an MCP client finds where to sign in.

pub mod issues;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::{Value, json};

use crate::{
    apps::serve::Shutdown,
    issuer::{AuthServer, ClientCredentials, Realm, Settings, TRACKER_SCOPES},
};

/// The MCP endpoint's path.
pub const MCP_PATH: &str = "/mcp";
/// Timeout of one introspection request.
const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest introspection answer read.
const MAX_INTROSPECTION_BYTES: usize = 16 * 1024;
/// Largest MCP request body accepted.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Who called, as the tracker's authorization server vouched (put into
/// the request's extensions for the tools).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account's subject (the person's employee id).
    pub sub: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
}

impl Caller {
    /// Whether the token carries `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// What the bearer check needs.
struct Guard {
    url: String,
    issuer: String,
    introspection_url: String,
    credentials: ClientCredentials,
    metadata_url: String,
    http: reqwest::Client,
}

/// The running tracker and its authorization server. Dropping it stops
/// both.
pub struct Tracker {
    url: String,
    metadata_url: String,
    auth: AuthServer,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("url", &self.url)
            .field("issuer", &self.auth.issuer())
            .finish_non_exhaustive()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tracker {
    /// Starts the tracker on `127.0.0.1:0` and its authorization server
    /// (`settings` with [`Realm::Tracker`] forced) on another port.
    pub async fn start(settings: Settings, shutdown: Shutdown) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("binding the tracker to 127.0.0.1")?;
        let origin = format!("http://{}", listener.local_addr()?);
        let url = format!("{origin}{MCP_PATH}");
        let metadata_url = format!("{origin}/.well-known/oauth-protected-resource{MCP_PATH}");
        let auth = AuthServer::start(
            &url,
            Settings {
                realm: Realm::Tracker,
                ..settings
            },
        )
        .await
        .context("starting the tracker's authorization server")?;
        let credentials = auth.register_confidential("tracker", "")?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(INTROSPECTION_TIMEOUT)
            .build()
            .context("the tracker's HTTP client")?;
        let guard = Arc::new(Guard {
            url: url.clone(),
            issuer: auth.issuer().to_string(),
            introspection_url: auth.introspection_url(),
            credentials,
            metadata_url: metadata_url.clone(),
            http,
        });
        let store = Arc::new(issues::Store::new());
        let mcp = StreamableHttpService::new(
            move || Ok(issues::TrackerServer::new(store.clone())),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default()
                .with_legacy_session_mode(false)
                .with_json_response(true)
                .with_sse_keep_alive(None)
                .with_max_request_body_bytes(MAX_REQUEST_BYTES),
        );
        let metadata = get(resource_metadata);
        let router = Router::new()
            .nest_service(MCP_PATH, mcp)
            .layer(axum::middleware::from_fn_with_state(
                guard.clone(),
                require_token,
            ))
            .route("/.well-known/oauth-protected-resource", metadata.clone())
            .route(
                &format!("/.well-known/oauth-protected-resource{MCP_PATH}"),
                metadata,
            )
            .with_state(guard);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.wait())
                .await
            {
                tracing::error!(error = %e, "the tracker failed");
            }
        });
        Ok(Self {
            url,
            metadata_url,
            auth,
            task,
        })
    }

    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`: the `resource`
    /// and the tokens' audience.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its RFC 9728 metadata URL.
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// Its authorization server.
    pub fn auth_server(&self) -> &AuthServer {
        &self.auth
    }
}

/// `GET /.well-known/oauth-protected-resource[/mcp]` (RFC 9728).
async fn resource_metadata(State(guard): State<Arc<Guard>>) -> Response {
    let body = json!({
        "resource": guard.url,
        "authorization_servers": [guard.issuer],
        "scopes_supported": TRACKER_SCOPES,
        "bearer_methods_supported": ["header"],
        "resource_name": "Tracker",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Why a request has no valid token.
enum Refusal {
    /// No `Authorization: Bearer`.
    Missing,
    /// A token the authorization server does not vouch for here.
    Invalid,
    /// The authorization server could not be asked.
    Unavailable,
}

/// JSON-RPC methods served without a token: discovery, so that an MCP
/// client (the gateway) can show the tools before anyone signs in. Every
/// tool call needs a token.
const OPEN_METHODS: [&str; 5] = [
    "initialize",
    "notifications/initialized",
    "server/discover",
    "tools/list",
    "ping",
];

/// Whether a request body is one discovery message (see [`OPEN_METHODS`]).
fn is_discovery(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Message {
        method: String,
    }
    serde_json::from_slice::<Message>(body).is_ok_and(|m| OPEN_METHODS.contains(&m.method.as_str()))
}

/// Lets through MCP requests whose bearer token the tracker's
/// authorization server vouches for, with audience = the tracker, and
/// token-less discovery requests.
async fn require_token(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(json!({"error": format!(
                "the tracker takes MCP requests of at most {MAX_REQUEST_BYTES} bytes"
            )})),
        )
            .into_response();
    };
    let mut request = Request::from_parts(parts, axum::body::Body::from(body.clone()));
    let checked = match token {
        None if is_discovery(&body) => return next.run(request).await,
        None => Err(Refusal::Missing),
        Some(token) => guard.introspect(&token).await,
    };
    match checked {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => guard.refuse(refusal),
    }
}

impl Guard {
    /// Asks the tracker's authorization server about `token` (RFC 7662).
    async fn introspect(&self, token: &str) -> Result<Caller, Refusal> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let response = self
            .http
            .post(&self.introspection_url)
            .basic_auth(
                &self.credentials.client_id,
                Some(&self.credentials.client_secret),
            )
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e.without_url(), "the tracker cannot reach its authorization server");
                Refusal::Unavailable
            })?;
        if !response.status().is_success()
            || response
                .content_length()
                .is_some_and(|n| n > MAX_INTROSPECTION_BYTES as u64)
        {
            return Err(Refusal::Unavailable);
        }
        let body = response.bytes().await.map_err(|_| Refusal::Unavailable)?;
        if body.len() > MAX_INTROSPECTION_BYTES {
            return Err(Refusal::Unavailable);
        }
        let answer: Value = serde_json::from_slice(&body).map_err(|_| Refusal::Unavailable)?;
        let text = |k: &str| answer.get(k).and_then(Value::as_str);
        let audience_ok = match answer.get("aud") {
            Some(Value::String(a)) => *a == self.url,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&self.url)),
            _ => false,
        };
        if answer.get("active").and_then(Value::as_bool) != Some(true)
            || text("token_type") != Some("Bearer")
            || text("iss") != Some(self.issuer.as_str())
            || !audience_ok
        {
            return Err(Refusal::Invalid);
        }
        let sub = text("sub").ok_or(Refusal::Invalid)?.to_string();
        let scopes = text("scope")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Caller { sub, scopes })
    }

    /// `401` with the RFC 9728 challenge, or `503`.
    fn refuse(&self, refusal: Refusal) -> Response {
        let (status, challenge, message) = match refusal {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer resource_metadata=\"{}\"", self.metadata_url),
                "the tracker needs a bearer token from its authorization server; \
                 see the resource metadata in WWW-Authenticate",
            ),
            Refusal::Invalid => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"the token is not a live \
                     token of the tracker's authorization server for this resource\", \
                     resource_metadata=\"{}\"",
                    self.metadata_url
                ),
                "the token is not a live token of the tracker's authorization server for this \
                 resource; sign in to the tracker again",
            ),
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                String::new(),
                "the tracker cannot check tokens right now; retry later",
            ),
        };
        let mut response = (status, axum::Json(json!({"error": message}))).into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge)
            && !challenge.is_empty()
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
