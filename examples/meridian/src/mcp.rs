//! The one MCP request a newcomer pastes: `tools/list` in the stateless
//! 2026-07-28 style (no `initialize`, no session; the protocol version and
//! client capabilities travel in `_meta`, mirrored by headers). The tests
//! send exactly this request, so the printed command is known to work.

use serde_json::{Value, json};

/// The protocol revision the request speaks.
pub const PROTOCOL_VERSION: &str = "2026-07-28";

/// The JSON-RPC body of a stateless request.
pub fn request(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "meridian-readme", "version": env!("CARGO_PKG_VERSION")},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The headers of a stateless request, besides `Authorization`.
/// `name` is `params.name` (or `uri`) for calls, reads and prompts.
pub fn headers(method: &str, name: Option<&str>) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("Content-Type", "application/json".to_string()),
        ("Accept", "application/json, text/event-stream".to_string()),
        ("MCP-Protocol-Version", PROTOCOL_VERSION.to_string()),
        ("Mcp-Method", method.to_string()),
    ];
    if let Some(name) = name {
        h.push(("Mcp-Name", name.to_string()));
    }
    h
}

/// A ready-to-paste `curl` listing the tools `token` may see. `token` may
/// be a shell variable such as `$SALES_REP` (it is double-quoted).
pub fn curl_tools_list(url: &str, token: &str) -> String {
    let mut out = format!("curl -s {url} \\\n  -H \"Authorization: Bearer {token}\"");
    for (k, v) in headers("tools/list", None) {
        out.push_str(&format!(" \\\n  -H '{k}: {v}'"));
    }
    let body = request(1, "tools/list", json!({}));
    out.push_str(&format!(" \\\n  -d '{body}'"));
    out
}
