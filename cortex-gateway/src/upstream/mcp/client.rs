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
//!
//! Requests go over the HTTP/1.1 connections the calling task drives
//! (`upstream/h1.rs`, as contract calls do), with the request body
//! serialized straight from borrowed parameters. `initialize` and its
//! notice, which need the answer's headers, and a server that negotiates
//! HTTP/2 go through `reqwest`.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures::{FutureExt as _, StreamExt as _, TryStreamExt as _};
use reqwest::{
    StatusCode,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue},
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::settings::{McpClientLimits, McpServerConfig};
use crate::{
    store::cache::BoundedCache,
    upstream::{Target, UpstreamError, h1},
};

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
    /// What the HTTP/1.1 connections dial with (the gateway's TLS setup).
    connector: h1::Connector,
    /// Per server id: its endpoint, parsed once, and its idle connections
    /// (bounded by the configured servers).
    targets: RwLock<HashMap<String, Arc<Target>>>,
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
    params: Params<'a>,
}

/// A request's `params`, serialized from what they borrow.
#[derive(Clone, Copy, Default, Serialize)]
struct Params<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
    meta: Option<Meta<'a>>,
}

/// The 2026-07-28 per-request `_meta`.
#[derive(Clone, Copy, Serialize)]
struct Meta<'a> {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: &'static str,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
    client_capabilities: NoCapabilities,
    #[serde(rename = "io.modelcontextprotocol/clientInfo")]
    client_info: &'a Value,
    /// W3C trace context (MCP's unprefixed `_meta` keys), when traced.
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracestate: Option<&'a str>,
}

/// `{}`.
#[derive(Clone, Copy, Serialize)]
struct NoCapabilities {}

/// A JSON-RPC request.
#[derive(Serialize)]
struct Rpc<'a, P> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: P,
}

impl McpClient {
    /// A client with these bounds.
    pub(crate) fn new(
        max_response_bytes: usize,
        limits: McpClientLimits,
        connector: h1::Connector,
    ) -> Result<Self, super::super::ClientBuildError> {
        let first = http_client().map_err(|e| super::super::ClientBuildError(e.to_string()))?;
        Ok(Self {
            http: (0..crate::sync::THREAD_SLOTS)
                .map(|_| OnceLock::new())
                .collect(),
            first,
            connector,
            targets: RwLock::new(HashMap::new()),
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
            let mut result = self
                .request(Call {
                    server,
                    token,
                    sub: "",
                    method: "tools/list",
                    params: Params {
                        cursor: cursor.as_deref(),
                        ..Params::default()
                    },
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
        self.request_raw(Call {
            server,
            token: Some(token),
            sub,
            method: "tools/call",
            params: Params {
                name: Some(name),
                arguments: Some(arguments),
                ..Params::default()
            },
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
            params: Params::default(),
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
        let trace = crate::telemetry::outgoing();
        let params = Params {
            meta: Some(Meta {
                protocol_version: MODERN,
                client_capabilities: NoCapabilities {},
                client_info: &self.info,
                traceparent: trace.as_ref().and_then(|t| t.traceparent()),
                tracestate: trace.as_ref().and_then(|t| t.tracestate()),
            }),
            ..call.params
        };
        let target = self.target(call.server)?;
        let mut headers = self.headers_in(&target, call.token)?;
        if let Some(trace) = &trace {
            trace.write(&mut headers);
        }
        headers.insert(VERSION_HEADER, HeaderValue::from_static(MODERN));
        headers.insert(
            "mcp-method",
            HeaderValue::from_str(call.method)
                .map_err(|_| UpstreamError::UnsafeHeader("mcp-method"))?,
        );
        if let Some(name) = call.params.name {
            headers.insert("mcp-name", header_safe(name));
        }
        self.send(call.server, &target, headers, call.method, params)
            .await
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
        let target = self.target(call.server)?;
        let mut headers = self.headers_in(&target, call.token)?;
        if let Some(trace) = crate::telemetry::outgoing() {
            trace.write(&mut headers);
        }
        headers.insert(VERSION_HEADER, HeaderValue::from_static(session.version));
        if let Some(id) = &session.id {
            headers.insert(SESSION_HEADER, id.clone());
        }
        self.send(call.server, &target, headers, call.method, call.params)
            .await
    }

    /// `server`'s endpoint, parsed once, and its idle connections.
    fn target(&self, server: &McpServerConfig) -> Result<Arc<Target>, UpstreamError> {
        if let Some(t) = crate::sync::read_lock(&self.targets)
            .get(&server.id)
            .filter(|t| t.url == server.url)
        {
            return Ok(t.clone());
        }
        let mut target = Target::at(&server.url)?;
        target.url = server.url.clone();
        let target = Arc::new(target);
        crate::sync::write_lock(&self.targets).insert(server.id.clone(), target.clone());
        Ok(target)
    }

    /// The request headers every exchange carries, in a header map the
    /// target's connections recycle.
    fn headers_in(&self, target: &Target, token: Option<&str>) -> Result<HeaderMap, UpstreamError> {
        with_common_headers(target.pool.header_map(), token)
    }

    /// POSTs one JSON-RPC request over the target's HTTP/1.1 connections
    /// (through `reqwest` once the server chose HTTP/2): its result, or the
    /// JSON-RPC error as [`UpstreamError::Rpc`]. A non-2xx status is an
    /// error of its own.
    async fn send(
        &self,
        server: &McpServerConfig,
        target: &Target,
        mut headers: HeaderMap,
        method: &str,
        params: Params<'_>,
    ) -> Result<Bytes, UpstreamError> {
        if target.http2.load(Ordering::Relaxed) {
            let (_, result) = self.exchange(server, headers, method, params).await?;
            return result;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::to_vec(&Rpc {
            jsonrpc: "2.0",
            id,
            method,
            params,
        })
        .map_err(|e| UpstreamError::InvalidJson(e.to_string()))?;
        headers.insert(hyper::header::HOST, target.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut request = hyper::Request::new(http_body_util::Full::new(Bytes::from(body)));
        *request.method_mut() = hyper::Method::POST;
        *request.uri_mut() = target.origin.clone();
        *request.headers_mut() = headers;
        let limit = self.max_response_bytes;
        // An event stream is read until it holds the response: a server
        // may keep it open after answering.
        let answered = move |read: &[u8]| {
            let read = futures::stream::iter([Ok::<_, LimitOrIo>(Bytes::copy_from_slice(read))]);
            matches!(
                response_in_events(read, id, limit).now_or_never(),
                Some(Ok(_) | Err(UpstreamError::Rpc { .. }))
            )
        };
        let answer = target
            .pool
            .call(
                &self.connector,
                &target.authority,
                request,
                limit,
                Some(&answered),
            )
            .await?;
        let (status, body, event_stream) = match answer {
            h1::Answer::Done(status, body, event_stream) => (status, body, event_stream),
            h1::Answer::Http2(unsent) => {
                target.http2.store(true, Ordering::Relaxed);
                let mut headers = unsent.into_parts().0.headers;
                headers.remove(hyper::header::HOST);
                let (_, result) = self.exchange(server, headers, method, params).await?;
                return result;
            }
        };
        if !status.is_success() {
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(status_error(status, body));
        }
        if event_stream {
            let whole = futures::stream::iter([Ok::<_, LimitOrIo>(body)]);
            return response_in_events(whole, id, self.max_response_bytes).await;
        }
        outcome(&body, id)
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
        with_common_headers(HeaderMap::new(), token)
    }

    /// POSTs one JSON-RPC request through `reqwest`; the answer's headers
    /// and its result (or the JSON-RPC error as [`UpstreamError::Rpc`]).
    /// A non-2xx status is an error of its own.
    async fn exchange(
        &self,
        server: &McpServerConfig,
        headers: HeaderMap,
        method: &str,
        params: impl Serialize,
    ) -> Result<(HeaderMap, Result<Bytes, UpstreamError>), UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = Rpc {
            jsonrpc: "2.0",
            id,
            method,
            params,
        };
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
        Ok(response_in_events(counted, id, limit).await)
    }
}

/// The message with `id` from the event stream `chunks` (whose transport
/// enforces the response limit `limit`).
async fn response_in_events(
    chunks: impl futures::Stream<Item = Result<Bytes, LimitOrIo>> + Unpin,
    id: u64,
    limit: usize,
) -> Result<Bytes, UpstreamError> {
    {
        let mut events = chunks.eventsource();
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
                return message.outcome();
            }
        }
    }
}

/// `headers` with what every request carries: `Accept`, and the bearer
/// `token` when there is one.
fn with_common_headers(
    mut headers: HeaderMap,
    token: Option<&str>,
) -> Result<HeaderMap, UpstreamError> {
    headers.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    if let Some(token) = token {
        headers.insert(AUTHORIZATION, bearer(token)?);
    }
    Ok(headers)
}

/// `Authorization: Bearer <token>`, marked sensitive.
fn bearer(token: &str) -> Result<HeaderValue, UpstreamError> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| UpstreamError::UnsafeHeader("authorization"))?;
    value.set_sensitive(true);
    Ok(value)
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
