//! The requests an agent sends: MCP over Streamable HTTP in both eras, and
//! the contract call a backend receives, plus the checks of their answers.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, header::HeaderValue};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::{backend::READ_TOOL, load::Template};

/// The stateless revision.
pub(crate) const MODERN: &str = "2026-07-28";
/// The session-based revision the legacy runs negotiate.
pub(crate) const LEGACY: &str = "2025-11-25";
/// The MCP endpoint path of the gateway.
pub(crate) const MCP_PATH: &str = "/mcp";
const ACCEPT: &str = "application/json, text/event-stream";

/// The arguments of every benchmark tool call.
fn arguments() -> Value {
    json!({"id": "42"})
}

/// The gateway-side name of `read_item` of backend `b0`.
pub(crate) fn tool_name() -> String {
    format!("b0_{READ_TOOL}")
}

fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "cortex-bench", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// A stateless (2026-07-28) request.
pub(crate) fn modern(method: &str, mut params: Value, token: &str) -> anyhow::Result<Template> {
    params["_meta"] = modern_meta();
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut t = Template::post(MCP_PATH, serde_json::to_vec(&body)?)
        .header("accept", ACCEPT)?
        .header("mcp-protocol-version", MODERN)?
        .header("mcp-method", method)?
        .bearer(token)?;
    if let Some(name) = name {
        t = t.header("mcp-name", &name)?;
    }
    Ok(t)
}

/// A request inside legacy session `session`.
pub(crate) fn legacy(
    method: &str,
    params: Value,
    token: &str,
    session: &str,
) -> anyhow::Result<Template> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    in_session(serde_json::to_vec(&body)?, token, session, LEGACY)
}

/// A POST of `body` (one message or a batch) inside session `session` of
/// `revision`.
pub(crate) fn in_session(
    body: Vec<u8>,
    token: &str,
    session: &str,
    revision: &str,
) -> anyhow::Result<Template> {
    Template::post(MCP_PATH, body)
        .header("accept", ACCEPT)?
        .header("mcp-protocol-version", revision)?
        .header("mcp-session-id", session)?
        .bearer(token)
}

/// `DELETE` of legacy session `session` (its end).
pub(crate) fn end_session(token: &str, session: &str) -> anyhow::Result<Template> {
    Template::bodiless(hyper::Method::DELETE, MCP_PATH)
        .header("mcp-protocol-version", LEGACY)?
        .header("mcp-session-id", session)?
        .bearer(token)
}

/// `tools/call` of `b0_read_item` (params only).
pub(crate) fn call_params() -> Value {
    json!({"name": tool_name(), "arguments": arguments()})
}

/// `tools/list` (params only).
pub(crate) fn list_params() -> Value {
    json!({})
}

/// The contract request the gateway sends backend `b0` for the same call,
/// with the same headers, to send through the bare proxy.
pub(crate) fn backend_call(token: &str) -> anyhow::Result<Template> {
    let body = json!({"method": READ_TOOL, "params": arguments()});
    Template::post(
        &format!("/b0{}", cortex_backend::contract::DEFAULT_PATH),
        serde_json::to_vec(&body)?,
    )
    .header("x-cortex-user-id", "bench-user")?
    .header("x-cortex-user-email", "bench@example.com")?
    .header("x-cortex-user-role", "")?
    .header("x-cortex-user-pool", "")?
    .header("x-cortex-scopes", crate::backend::SCOPE)?
    .bearer(token)
}

/// The answer carries the item and is not a tool error.
pub(crate) fn check_call(body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if text.contains("\"isError\":true") {
        return Err("the tool call failed".into());
    }
    if !text.contains("Item 42") {
        return Err("the item is missing from the answer".into());
    }
    Ok(())
}

/// A `tools/list` request as the official clients send it: their HTTP
/// stacks (Node's `fetch`, Python's `httpx`) ask for gzip.
pub(crate) fn list(params: Value, token: &str) -> anyhow::Result<Template> {
    modern("tools/list", params, token)?.header("accept-encoding", "gzip, deflate")
}

/// `body`, gunzipped when it is gzip (by its magic bytes).
pub(crate) fn decoded(body: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    use std::io::Read as _;
    if !body.starts_with(&[0x1f, 0x8b]) {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .map_err(|e| format!("the gzip answer does not decode: {e}"))?;
    Ok(std::borrow::Cow::Owned(out))
}

/// The answer lists the read tool.
pub(crate) fn check_list(body: &[u8]) -> Result<(), String> {
    let body = decoded(body)?;
    let text = String::from_utf8_lossy(&body);
    if text.contains("\"error\"") || !text.contains(READ_TOOL) {
        return Err("the tool list lacks read_item".into());
    }
    Ok(())
}

/// A keep-alive HTTP/1.1 connection to `addr`.
pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One keep-alive connection's request side.
pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One request and its whole answer (set-up steps, not measured).
pub(crate) async fn exchange(
    sender: &mut Sender,
    addr: SocketAddr,
    template: &Template,
) -> anyhow::Result<(hyper::StatusCode, hyper::HeaderMap, Bytes)> {
    let request: Request<Full<Bytes>> = template.build_for(addr);
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    Ok((
        parts.status,
        parts.headers,
        body.collect().await?.to_bytes(),
    ))
}

/// Opens `count` legacy sessions for `token` over `connections` connections
/// (`initialize`, then `notifications/initialized`, then a `tools/list` in
/// the session when `list` is set); returns their ids.
pub(crate) async fn open_sessions(
    addr: SocketAddr,
    token: &str,
    count: usize,
    connections: usize,
    list: bool,
) -> anyhow::Result<Vec<String>> {
    let connections = connections.clamp(1, count.max(1));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let share = count / connections + usize::from(c < count % connections);
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut ids = Vec::with_capacity(share);
            for _ in 0..share {
                let session = open_session(&mut sender, addr, &token, LEGACY).await?;
                if list {
                    let template = legacy("tools/list", list_params(), &token, &session)?;
                    let (status, _, body) = exchange(&mut sender, addr, &template).await?;
                    if !status.is_success() || check_list(&body).is_err() {
                        bail!(
                            "tools/list in a session answered {status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(600)])
                        );
                    }
                }
                ids.push(session);
            }
            anyhow::Ok(ids)
        }));
    }
    let mut all = Vec::with_capacity(count);
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

/// `initialize` of `revision`, then `notifications/initialized`; returns
/// the session id.
pub(crate) async fn open_session(
    sender: &mut Sender,
    addr: SocketAddr,
    token: &str,
    revision: &str,
) -> anyhow::Result<String> {
    let init = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": revision,
            "capabilities": {},
            "clientInfo": {"name": "cortex-bench", "version": env!("CARGO_PKG_VERSION")},
        },
    });
    let template = Template::post(MCP_PATH, serde_json::to_vec(&init)?)
        .header("accept", ACCEPT)?
        .bearer(token)?;
    let (status, headers, body) = exchange(sender, addr, &template).await?;
    if !status.is_success() {
        bail!(
            "initialize answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let session = headers
        .get("mcp-session-id")
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .context("initialize answered without an Mcp-Session-Id header")?
        .to_owned();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let template = in_session(serde_json::to_vec(&initialized)?, token, &session, revision)?;
    let (status, _, body) = exchange(sender, addr, &template).await?;
    if !status.is_success() {
        bail!(
            "notifications/initialized answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(session)
}
