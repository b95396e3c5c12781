//! The downstream MCP client: JSON-RPC over Streamable HTTP to a
//! third-party MCP server, in the era the server speaks.
//!
//! The era is learnt once per server: a 2026-07-28 `server/discover` is
//! sent first; a server that answers it with a result is called
//! statelessly from then on (per-request `_meta`, `MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name`). Any other answer (an HTTP 400/404/405, a
//! JSON-RPC error) selects the `initialize`-based revisions: a session per
//! (user, server), negotiated once and kept in a table bounded by count
//! and bytes; a 404 on a session re-initializes once. Answers may be
//! `application/json` or `text/event-stream` (the response with our id is
//! taken from the stream; notifications and requests of the server are
//! ignored). Every exchange is bounded by the server's timeout and the
//! response limit; redirects are never followed.

use std::{
    collections::HashMap,
    sync::{
        Mutex, OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::{
    StatusCode,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue},
};
use serde_json::{Map, Value, json};

use super::settings::{McpClientLimits, McpServerConfig};
use crate::{store::cache::BoundedCache, upstream::UpstreamError};

/// The revision of the stateless era.
pub(crate) const MODERN: &str = "2026-07-28";
/// The `initialize`-based revisions this client speaks, newest first.
pub(crate) const LEGACY: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
/// Bytes charged for a session beyond its key and id.
const SESSION_OVERHEAD: usize = 96;

/// Which era a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Era {
    /// 2026-07-28: stateless.
    Modern,
    /// `initialize`-based.
    Legacy,
}

/// A negotiated legacy session.
#[derive(Debug, Clone)]
struct Session {
    /// The server's `Mcp-Session-Id`, when it gave one.
    id: Option<HeaderValue>,
    /// The negotiated revision.
    version: &'static str,
}

/// The client of every configured MCP server.
pub(crate) struct McpClient {
    /// One client (and connection pool) per thread slot: a serving
    /// thread's connections stay on its own runtime, as the contract
    /// backends' do (ADR 0002); one shared pool would hand every request to
    /// the runtime that opened the connection.
    http: Vec<OnceLock<reqwest::Client>>,
    /// The first client, built at start: building one can fail.
    first: reqwest::Client,
    max_response_bytes: usize,
    limits: McpClientLimits,
    /// Per server id (bounded by the configured servers).
    eras: RwLock<HashMap<String, Era>>,
    /// Per (`sub`, server id); the discovery account's key has an empty `sub`.
    sessions: Mutex<BoundedCache<(String, String), Session>>,
    next_id: AtomicU64,
    info: Value,
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("max_response_bytes", &self.max_response_bytes)
            .field("limits", &self.limits)
            .field("sessions", &crate::sync::lock(&self.sessions).usage())
            .finish_non_exhaustive()
    }
}

/// One request to send.
struct Call<'a> {
    server: &'a McpServerConfig,
    token: Option<&'a str>,
    sub: &'a str,
    method: &'a str,
    params: Map<String, Value>,
}

impl McpClient {
    /// A client with these bounds.
    pub(crate) fn new(
        max_response_bytes: usize,
        limits: McpClientLimits,
    ) -> Result<Self, super::super::ClientBuildError> {
        let first = http_client().map_err(|e| super::super::ClientBuildError(e.to_string()))?;
        Ok(Self {
            http: (0..crate::sync::THREAD_SLOTS)
                .map(|_| OnceLock::new())
                .collect(),
            first,
            max_response_bytes,
            limits,
            eras: RwLock::new(HashMap::new()),
            sessions: Mutex::new(BoundedCache::new(
                limits.max_sessions,
                limits.max_session_bytes,
            )),
            next_id: AtomicU64::new(1),
            info: json!({"name": "cortex-gateway", "version": env!("CARGO_PKG_VERSION")}),
        })
    }

    /// The calling thread's client.
    fn http(&self) -> &reqwest::Client {
        let slot = &self.http[crate::sync::thread_slot() % self.http.len()];
        slot.get_or_init(|| http_client().unwrap_or_else(|_| self.first.clone()))
    }

    /// The era `server` speaks, once known.
    pub(crate) fn era(&self, server: &str) -> Option<Era> {
        crate::sync::read_lock(&self.eras).get(server).copied()
    }

    /// Every tool of `server` (`tools/list`, following `nextCursor` up to
    /// the page bound), asked with `token` (the catalog account's) or none.
    pub(crate) async fn list_tools(
        &self,
        server: &McpServerConfig,
        token: Option<&str>,
    ) -> Result<Vec<Value>, UpstreamError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..self.limits.max_list_pages {
            let mut params = Map::new();
            if let Some(c) = cursor.take() {
                params.insert("cursor".into(), Value::String(c));
            }
            let mut result = self
                .request(Call {
                    server,
                    token,
                    sub: "",
                    method: "tools/list",
                    params,
                })
                .await?;
            match result.get_mut("tools").map(Value::take) {
                Some(Value::Array(page)) => tools.extend(page),
                _ => {
                    return Err(UpstreamError::InvalidJson(
                        "tools/list answered without a `tools` array".into(),
                    ));
                }
            }
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => cursor = Some(next.to_string()),
                _ => return Ok(tools),
            }
        }
        tracing::warn!(
            server = %server.id,
            pages = self.limits.max_list_pages,
            "tools/list has more pages than CORTEX_MCP_MAX_LIST_PAGES; the rest is left out"
        );
        Ok(tools)
    }

    /// Calls the tool `name` of `server` for `sub` with `token`: the
    /// server's `CallToolResult`, as it wrote it (a JSON object).
    pub(crate) async fn call_tool(
        &self,
        server: &McpServerConfig,
        token: &str,
        sub: &str,
        name: &str,
        arguments: &Map<String, Value>,
    ) -> Result<Bytes, UpstreamError> {
        let mut params = Map::new();
        params.insert("name".into(), Value::String(name.into()));
        params.insert("arguments".into(), Value::Object(arguments.clone()));
        self.request_raw(Call {
            server,
            token: Some(token),
            sub,
            method: "tools/call",
            params,
        })
        .await
    }

    /// One request, within the server's timeout: its result parsed.
    async fn request(&self, call: Call<'_>) -> Result<Value, UpstreamError> {
        let raw = self.request_raw(call).await?;
        serde_json::from_slice(&raw).map_err(|e| UpstreamError::InvalidJson(e.to_string()))
    }

    /// One request, within the server's timeout: its result as written.
    async fn request_raw(&self, call: Call<'_>) -> Result<Bytes, UpstreamError> {
        let timeout = call.server.timeout();
        match tokio::time::timeout(timeout, self.request_untimed(call)).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout(timeout.as_millis() as u64)),
        }
    }

    async fn request_untimed(&self, call: Call<'_>) -> Result<Bytes, UpstreamError> {
        let era = match self.era(&call.server.id) {
            Some(era) => era,
            None => self.learn_era(&call).await?,
        };
        match era {
            Era::Modern => self.modern(&call).await,
            Era::Legacy => self.legacy(&call).await,
        }
    }

    /// Sends `server/discover`; a result means 2026-07-28.
    async fn learn_era(&self, call: &Call<'_>) -> Result<Era, UpstreamError> {
        let probe = Call {
            server: call.server,
            token: call.token,
            sub: call.sub,
            method: "server/discover",
            params: Map::new(),
        };
        let era = match self.modern(&probe).await.and_then(|raw| {
            serde_json::from_slice::<Value>(&raw)
                .map_err(|e| UpstreamError::InvalidJson(e.to_string()))
        }) {
            Ok(result) => {
                let speaks = result
                    .get("supportedVersions")
                    .and_then(Value::as_array)
                    .is_none_or(|v| v.iter().any(|v| v.as_str() == Some(MODERN)));
                if speaks { Era::Modern } else { Era::Legacy }
            }
            // The token was refused: nothing is learnt.
            Err(e @ UpstreamError::Status { status: 401, .. }) => return Err(e),
            Err(
                e @ (UpstreamError::Timeout(_)
                | UpstreamError::Unreachable(_)
                | UpstreamError::TooLarge(_)),
            ) => return Err(e),
            Err(_) => Era::Legacy,
        };
        crate::sync::write_lock(&self.eras).insert(call.server.id.clone(), era);
        Ok(era)
    }

    /// A stateless request.
    async fn modern(&self, call: &Call<'_>) -> Result<Bytes, UpstreamError> {
        let mut params = call.params.clone();
        let meta = params
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            meta.insert(
                "io.modelcontextprotocol/protocolVersion".into(),
                json!(MODERN),
            );
            meta.insert(
                "io.modelcontextprotocol/clientCapabilities".into(),
                json!({}),
            );
            meta.insert(
                "io.modelcontextprotocol/clientInfo".into(),
                self.info.clone(),
            );
        }
        let mut headers = self.headers(call.token)?;
        headers.insert(VERSION_HEADER, HeaderValue::from_static(MODERN));
        headers.insert(
            "mcp-method",
            HeaderValue::from_str(call.method)
                .map_err(|_| UpstreamError::UnsafeHeader("mcp-method"))?,
        );
        if let Some(name) = call.params.get("name").and_then(Value::as_str) {
            headers.insert("mcp-name", header_safe(name));
        }
        let (_, result) = self
            .exchange(call.server, headers, call.method, params)
            .await?;
        result
    }

    /// A request in the caller's legacy session (made when missing; made
    /// again once when the server says it ended).
    async fn legacy(&self, call: &Call<'_>) -> Result<Bytes, UpstreamError> {
        let key = (call.sub.to_string(), call.server.id.clone());
        let mut fresh = false;
        let kept = crate::sync::lock(&self.sessions).get(&key);
        let session = match kept {
            Some(s) => s,
            None => {
                fresh = true;
                self.initialize(call, &key).await?
            }
        };
        match self.in_session(call, &session).await {
            Err(UpstreamError::Status { status: 404, .. }) if !fresh && session.id.is_some() => {
                let session = self.initialize(call, &key).await?;
                self.in_session(call, &session).await
            }
            other => other,
        }
    }

    async fn in_session(&self, call: &Call<'_>, session: &Session) -> Result<Bytes, UpstreamError> {
        let mut headers = self.headers(call.token)?;
        headers.insert(VERSION_HEADER, HeaderValue::from_static(session.version));
        if let Some(id) = &session.id {
            headers.insert(SESSION_HEADER, id.clone());
        }
        let (_, result) = self
            .exchange(call.server, headers, call.method, call.params.clone())
            .await?;
        result
    }

    /// `initialize` + `notifications/initialized`; keeps the session.
    async fn initialize(
        &self,
        call: &Call<'_>,
        key: &(String, String),
    ) -> Result<Session, UpstreamError> {
        let params = json!({
            "protocolVersion": LEGACY[0],
            "capabilities": {},
            "clientInfo": self.info,
        });
        let Value::Object(params) = params else {
            unreachable!("an object literal")
        };
        let headers = self.headers(call.token)?;
        let (answer_headers, result) = self
            .exchange(call.server, headers, "initialize", params)
            .await?;
        let result: Value = serde_json::from_slice(&result?)
            .map_err(|e| UpstreamError::InvalidJson(e.to_string()))?;
        let offered = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(version) = LEGACY.iter().copied().find(|v| *v == offered) else {
            return Err(UpstreamError::InvalidJson(format!(
                "the server chose protocol version `{offered}`, which the gateway does not speak"
            )));
        };
        let session = Session {
            id: answer_headers.get(SESSION_HEADER).cloned(),
            version,
        };
        let mut headers = self.headers(call.token)?;
        headers.insert(VERSION_HEADER, HeaderValue::from_static(version));
        if let Some(id) = &session.id {
            headers.insert(SESSION_HEADER, id.clone());
        }
        let notice = self
            .http()
            .post(&call.server.url)
            .headers(headers)
            .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await
            .map_err(unreachable)?;
        if !notice.status().is_success() {
            return Err(status_error(notice.status(), Value::Null));
        }
        let bytes = key.0.len()
            + key.1.len()
            + session.id.as_ref().map_or(0, HeaderValue::len)
            + SESSION_OVERHEAD;
        crate::sync::lock(&self.sessions).insert(key.clone(), session.clone(), bytes);
        Ok(session)
    }

    fn headers(&self, token: Option<&str>) -> Result<HeaderMap, UpstreamError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(token) = token {
            let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| UpstreamError::UnsafeHeader("authorization"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(headers)
    }

    /// POSTs one JSON-RPC request; the answer's headers and its result
    /// (or the JSON-RPC error as [`UpstreamError::Rpc`]). A non-2xx status
    /// is an error of its own.
    async fn exchange(
        &self,
        server: &McpServerConfig,
        headers: HeaderMap,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<(HeaderMap, Result<Bytes, UpstreamError>), UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self
            .http()
            .post(&server.url)
            .headers(headers)
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let answer_headers = response.headers().clone();
        let is_sse = answer_headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if !status.is_success() {
            let body = self
                .read_body(response)
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            return Err(status_error(status, body));
        }
        let result = if is_sse {
            self.read_sse(response, id).await?
        } else {
            let body = self.read_body(response).await?;
            outcome(&body, id)
        };
        Ok((answer_headers, result))
    }

    /// The body, within the response limit.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(UpstreamError::TooLarge(self.max_response_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The message with our `id` from an event stream, within the
    /// response limit (counted over the whole stream).
    async fn read_sse(
        &self,
        response: reqwest::Response,
        id: u64,
    ) -> Result<Result<Bytes, UpstreamError>, UpstreamError> {
        let limit = self.max_response_bytes;
        let mut seen = 0usize;
        let counted = response.bytes_stream().map(move |chunk| {
            let chunk: Bytes = chunk.map_err(|e| LimitOrIo::Io(e.to_string()))?;
            seen += chunk.len();
            if seen > limit {
                return Err(LimitOrIo::Limit);
            }
            Ok(chunk)
        });
        let mut events = counted.eventsource();
        loop {
            let event = match events.try_next().await {
                Ok(Some(event)) => event,
                Ok(None) => {
                    return Err(UpstreamError::InvalidJson(
                        "the event stream ended without the response".into(),
                    ));
                }
                Err(eventsource_stream::EventStreamError::Transport(LimitOrIo::Limit)) => {
                    return Err(UpstreamError::TooLarge(limit));
                }
                Err(e) => return Err(UpstreamError::Unreachable(e.to_string())),
            };
            if event.data.trim().is_empty() {
                continue;
            }
            let Ok(message) = serde_json::from_str::<Envelope<'_>>(&event.data) else {
                continue;
            };
            let ours = message.id.as_ref().and_then(Value::as_u64) == Some(id)
                && (message.result.is_some() || message.error.is_some());
            if ours {
                return Ok(message.outcome());
            }
        }
    }
}

/// A client that never follows a redirect (a bearer token must not be
/// replayed to another host).
fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}

/// A transport failure or the response limit, inside the event stream.
#[derive(Debug)]
enum LimitOrIo {
    Limit,
    Io(String),
}

impl std::fmt::Display for LimitOrIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Limit => f.write_str("the response limit was exceeded"),
            Self::Io(e) => f.write_str(e),
        }
    }
}

/// A JSON-RPC response, its result left as written.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default, borrow)]
    result: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    error: Option<Value>,
}

impl Envelope<'_> {
    /// The result (a JSON object, as written), or the error.
    fn outcome(&self) -> Result<Bytes, UpstreamError> {
        if let Some(error) = &self.error {
            return Err(UpstreamError::Rpc {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
                    .chars()
                    .take(500)
                    .collect(),
            });
        }
        match self.result.map(|r| r.get().trim()) {
            Some(raw) if raw.starts_with('{') => Ok(Bytes::copy_from_slice(raw.as_bytes())),
            _ => Err(UpstreamError::InvalidJson(
                "the response has no result object".into(),
            )),
        }
    }
}

/// The result of the JSON-RPC response `body` to request `id`, or its
/// error.
fn outcome(body: &[u8], id: u64) -> Result<Bytes, UpstreamError> {
    let message: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| UpstreamError::InvalidJson(e.to_string()))?;
    if message.id.as_ref().and_then(Value::as_u64) != Some(id) {
        return Err(UpstreamError::InvalidJson(
            "the answer is not the response to the request".into(),
        ));
    }
    message.outcome()
}

fn status_error(status: StatusCode, body: Value) -> UpstreamError {
    let message = body
        .pointer("/error/message")
        .or_else(|| body.get("error_description"))
        .or_else(|| body.get("error"))
        .and_then(Value::as_str)
        .map(|m| m.chars().take(500).collect())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_string()
        });
    UpstreamError::Status {
        status: status.as_u16(),
        message,
        required: None,
        body,
    }
}

fn unreachable(e: reqwest::Error) -> UpstreamError {
    // Without the URL: it may name an internal host.
    UpstreamError::Unreachable(e.without_url().to_string())
}

/// A header value for `text`, base64-wrapped (`=?base64?…?=`) when it is
/// not plain visible ASCII (2026-07-28 `Mcp-Name`).
fn header_safe(text: &str) -> HeaderValue {
    use base64::Engine as _;
    let plain = !text.is_empty() && text.bytes().all(|b| (0x20..0x7f).contains(&b));
    if plain && let Ok(v) = HeaderValue::from_str(text) {
        return v;
    }
    let wrapped = format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode(text)
    );
    HeaderValue::from_str(&wrapped).unwrap_or_else(|_| HeaderValue::from_static(""))
}
