//! A small MCP client over HTTP (both eras) that validates every JSON-RPC
//! message the gateway sends against the official schema of the revision
//! in use.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};

pub(crate) const LEGACY: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
pub(crate) const MODERN: &str = "2026-07-28";

// ----- schema validation -----

struct Schemas {
    files: HashMap<&'static str, Value>,
    validators: Mutex<HashMap<(String, String), std::sync::Arc<jsonschema::Validator>>>,
}

fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| {
        let mut files = HashMap::new();
        for rev in ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"] {
            let path = format!(
                "{}/../schemas/mcp/{rev}/schema.json",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
            files.insert(rev, serde_json::from_str(&text).unwrap());
        }
        Schemas {
            files,
            validators: Mutex::new(HashMap::new()),
        }
    })
}

fn validator(revision: &str, definition: &str) -> std::sync::Arc<jsonschema::Validator> {
    let s = schemas();
    let key = (revision.to_string(), definition.to_string());
    if let Some(v) = s.validators.lock().unwrap().get(&key) {
        return v.clone();
    }
    let mut root = s.files[revision].clone();
    let defs = if root.get("$defs").is_some() {
        "$defs"
    } else {
        "definitions"
    };
    assert!(
        root[defs].get(definition).is_some(),
        "{revision} has no definition {definition}"
    );
    root["$ref"] = json!(format!("#/{defs}/{definition}"));
    let v = std::sync::Arc::new(
        jsonschema::validator_for(&root)
            .unwrap_or_else(|e| panic!("schema {revision}/{definition}: {e}")),
    );
    s.validators.lock().unwrap().insert(key, v.clone());
    v
}

/// Asserts `value` validates against `definition` of `revision`.
pub(crate) fn assert_valid(revision: &str, definition: &str, value: &Value) {
    let v = validator(revision, definition);
    let errors: Vec<String> = v
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{revision} {definition} rejects {value:#}:\n{}",
        errors.join("\n")
    );
}

fn result_definition(method: &str) -> Option<&'static str> {
    Some(match method {
        "initialize" => "InitializeResult",
        "tools/list" => "ListToolsResult",
        "tools/call" => "CallToolResult",
        "prompts/list" => "ListPromptsResult",
        "prompts/get" => "GetPromptResult",
        "resources/list" => "ListResourcesResult",
        "resources/templates/list" => "ListResourceTemplatesResult",
        "resources/read" => "ReadResourceResult",
        "server/discover" => "DiscoverResult",
        "ping" => "EmptyResult",
        _ => return None,
    })
}

/// Validates one message the gateway sent in answer to `method`.
pub(crate) fn validate_message(revision: &str, method: Option<&str>, message: &Value) {
    assert_valid(revision, "JSONRPCMessage", message);
    if let (Some(method), Some(result)) = (method, message.get("result"))
        && let Some(def) = result_definition(method)
    {
        assert_valid(revision, def, result);
    }
    if message.get("method").is_some() {
        assert_valid(revision, "ServerNotification", message);
    }
    if revision == MODERN
        && let Some(error) = message.get("error")
    {
        // Some definitions describe the whole response, others the error object.
        match error["code"].as_i64() {
            Some(-32022) => assert_valid(revision, "UnsupportedProtocolVersionError", message),
            Some(-32020) => assert_valid(revision, "HeaderMismatchError", message),
            Some(-32601) => assert_valid(revision, "MethodNotFoundError", error),
            Some(-32602) => assert_valid(revision, "InvalidParamsError", error),
            _ => {}
        }
    }
}

// ----- the client -----

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    /// The revision in use (`2026-07-28` for the stateless era).
    pub(crate) revision: String,
    pub(crate) session: Option<String>,
    pub(crate) extra_headers: Vec<(String, String)>,
    next_id: i64,
}

impl Client {
    fn base(url: &str, token: &str, revision: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_string(),
            token: Some(token.to_string()),
            revision: revision.to_string(),
            session: None,
            extra_headers: Vec::new(),
            next_id: 1,
        }
    }

    /// A stateless-era client.
    pub(crate) fn modern(url: &str, token: &str) -> Self {
        Self::base(url, token, MODERN)
    }

    /// A legacy client after `initialize` + `notifications/initialized`.
    pub(crate) async fn legacy(url: &str, token: &str, revision: &str) -> Self {
        let mut c = Self::base(url, token, revision);
        let reply = c
            .post_raw(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": revision,
                    "capabilities": {},
                    "clientInfo": {"name": "it", "version": "0"}
                }}),
                &[],
            )
            .await;
        assert_eq!(reply.status, 200, "initialize: {:?}", reply.body);
        validate_message(revision, Some("initialize"), &reply.body);
        assert_eq!(reply.body["result"]["protocolVersion"], revision);
        let session = reply.headers["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(session.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        c.session = Some(session);
        let r = c
            .post_raw(
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                &[],
            )
            .await;
        assert_eq!(r.status, 202);
        c
    }

    pub(crate) fn is_modern(&self) -> bool {
        self.revision == MODERN
    }

    fn request_builder(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut b = self
            .http
            .request(method, &self.url)
            .header("accept", "application/json, text/event-stream");
        if let Some(t) = &self.token {
            b = b.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            b = b.header("mcp-session-id", s);
        }
        if !self.is_modern() && self.session.is_some() && self.revision != "2025-03-26" {
            b = b.header("mcp-protocol-version", &self.revision);
        }
        for (k, v) in &self.extra_headers {
            b = b.header(k, v);
        }
        b
    }

    /// POSTs a body with extra headers; no validation.
    pub(crate) async fn post_raw(&self, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut b = self
            .request_builder(reqwest::Method::POST)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let r = b.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Sends `body` and returns the status, the headers and the body's raw
    /// bytes (not decoded in any way).
    pub(crate) async fn post_bytes(
        &self,
        body: &Value,
        headers: &[(String, String)],
    ) -> (StatusCode, HeaderMap, bytes::Bytes) {
        let mut b = self
            .request_builder(reqwest::Method::POST)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let r = b.send().await.unwrap();
        (r.status(), r.headers().clone(), r.bytes().await.unwrap())
    }

    /// The body of a request in this client's era, with its headers.
    pub(crate) fn envelope(
        &mut self,
        method: &str,
        mut params: Value,
    ) -> (Value, Vec<(String, String)>) {
        let id = self.next_id;
        self.next_id += 1;
        let mut headers = Vec::new();
        if self.is_modern() {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "0"},
            });
            headers.push(("mcp-protocol-version".to_string(), MODERN.to_string()));
            headers.push(("mcp-method".to_string(), method.to_string()));
            let name = match method {
                "tools/call" | "prompts/get" => params["name"].as_str(),
                "resources/read" => params["uri"].as_str(),
                _ => None,
            };
            if let Some(n) = name {
                headers.push(("mcp-name".to_string(), n.to_string()));
            }
        }
        (
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            headers,
        )
    }

    /// Sends a request and returns the reply, validated against the schema.
    pub(crate) async fn send(&mut self, method: &str, params: Value) -> Reply {
        let (body, headers) = self.envelope(method, params);
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let reply = self.post_raw(&body, &h).await;
        // HTTP-level refusals (401/403 OAuth bodies) are not JSON-RPC; every
        // JSON-RPC message is validated.
        if reply.body.get("jsonrpc").is_some() {
            validate_message(&self.revision, Some(method), &reply.body);
        }
        reply
    }

    /// Sends a request that must succeed; returns `result`.
    pub(crate) async fn ok(&mut self, method: &str, params: Value) -> Value {
        let reply = self.send(method, params).await;
        assert_eq!(reply.status, 200, "{method}: {:?}", reply.body);
        assert!(
            reply.body.get("error").is_none(),
            "{method}: {:#}",
            reply.body
        );
        if self.is_modern() {
            assert_eq!(reply.body["result"]["resultType"], "complete");
        }
        reply.body["result"].clone()
    }

    /// Sends a request that must fail with a JSON-RPC error; returns it.
    pub(crate) async fn err(&mut self, method: &str, params: Value) -> Value {
        let reply = self.send(method, params).await;
        assert!(
            reply.body.get("error").is_some(),
            "{method}: {:#}",
            reply.body
        );
        reply.body["error"].clone()
    }

    /// All tool names (walking pagination).
    pub(crate) async fn tool_names(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let r = self.ok("tools/list", params).await;
            names.extend(
                r["tools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["name"].as_str().unwrap().to_string()),
            );
            match r.get("nextCursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_string()),
                None => return names,
            }
        }
    }

    /// Calls a tool; returns the `CallToolResult`.
    pub(crate) async fn call(&mut self, name: &str, arguments: Value) -> Value {
        self.ok("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// Opens the legacy GET stream.
    pub(crate) async fn open_get_stream(&self) -> EventStream {
        let r = self
            .request_builder(reqwest::Method::GET)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        EventStream::new(r, self.revision.clone())
    }

    /// Opens a `subscriptions/listen` stream (stateless era).
    pub(crate) async fn listen(&mut self, filter: Value) -> (Value, EventStream) {
        let (body, headers) =
            self.envelope("subscriptions/listen", json!({"notifications": filter}));
        let id = body["id"].clone();
        let mut b = self
            .request_builder(reqwest::Method::POST)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in &headers {
            b = b.header(k, v);
        }
        let r = b.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-accel-buffering"], "no");
        (id, EventStream::new(r, self.revision.clone()))
    }
}

type BoxedEvents = std::pin::Pin<Box<dyn Stream<Item = Value> + Send>>;

/// JSON-RPC messages from an SSE response, each validated.
pub(crate) struct EventStream {
    events: BoxedEvents,
    revision: String,
}

impl EventStream {
    fn new(r: reqwest::Response, revision: String) -> Self {
        let events = r
            .bytes_stream()
            .eventsource()
            .filter_map(|e| async move {
                let e = e.ok()?;
                if e.data.trim().is_empty() {
                    return None;
                }
                Some(serde_json::from_str::<Value>(&e.data).expect("SSE data is JSON"))
            })
            .boxed();
        Self { events, revision }
    }

    /// The next message within `wait`, validated.
    pub(crate) async fn next(&mut self, wait: Duration) -> Option<Value> {
        let m = tokio::time::timeout(wait, self.events.next())
            .await
            .ok()??;
        validate_message(&self.revision, None, &m);
        Some(m)
    }
}

#[test]
fn schema_validation_can_fail() {
    for rev in ["2025-03-26", "2025-06-18", "2025-11-25", MODERN] {
        let v = validator(rev, "CallToolResult");
        assert!(!v.is_valid(&json!({"content": "not an array"})), "{rev}");
        assert!(
            !validator(rev, "JSONRPCMessage")
                .is_valid(&json!({"jsonrpc": "1.0", "id": 1, "result": {}})),
            "{rev}"
        );
    }
    assert!(
        !validator(MODERN, "ListToolsResult")
            .is_valid(&json!({"tools": [], "resultType": "complete"})),
        "2026-07-28 lists need ttlMs and cacheScope"
    );
}
