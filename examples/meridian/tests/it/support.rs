//! Starting the example and talking to it.

use std::time::Duration;

use meridian::{Options, Running, mcp};
use serde_json::{Value, json};

/// The example on free ports, with 10-minute tokens.
pub(crate) async fn start() -> Running {
    meridian::start(Options {
        port: 0,
        token_ttl: Duration::from_secs(600),
    })
    .await
    .expect("Meridian starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}

/// Calls an app's contract endpoint directly: (status, body).
pub(crate) async fn backend(url: &str, token: &str, method: &str, params: Value) -> (u16, Value) {
    let response = client()
        .post(url)
        .bearer_auth(token)
        .json(&json!({"method": method, "params": params}))
        .send()
        .await
        .expect("the app answers");
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}

/// Sends one stateless (2026-07-28) MCP request to the gateway, exactly as
/// the printed curl command does; returns the JSON-RPC response.
pub(crate) async fn mcp(
    url: &str,
    token: &str,
    method: &str,
    params: Value,
    name: Option<&str>,
) -> Value {
    let mut request = client().post(url).bearer_auth(token);
    for (k, v) in mcp::headers(method, name) {
        request = request.header(k, v);
    }
    let response = request
        .body(mcp::request(7, method, params).to_string())
        .send()
        .await
        .expect("the gateway answers");
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let text = response.text().await.expect("a body");
    if is_sse {
        let last = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .next_back()
            .expect("an SSE data line");
        serde_json::from_str(last.trim()).expect("JSON in the SSE event")
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON-RPC response ({e}): {text}"))
    }
}

/// The sorted `name`s of a list result (`tools`, `prompts`, ...).
pub(crate) fn names(response: &Value, list: &str) -> Vec<String> {
    let mut names: Vec<String> = response["result"][list]
        .as_array()
        .unwrap_or_else(|| panic!("no `{list}` in {response}"))
        .iter()
        .map(|t| t["name"].as_str().expect("a name").to_string())
        .collect();
    names.sort();
    names
}

/// The sorted tool names a token sees through the gateway.
pub(crate) async fn tool_names(running: &Running, token: &str) -> Vec<String> {
    names(
        &mcp(&running.url, token, "tools/list", json!({}), None).await,
        "tools",
    )
}

/// Sends `tools/call` through the gateway; returns the JSON-RPC response.
pub(crate) async fn call(url: &str, token: &str, tool: &str, arguments: Value) -> Value {
    let params = json!({"name": tool, "arguments": arguments});
    mcp(url, token, "tools/call", params, Some(tool)).await
}

/// Calls a tool through the gateway; returns the `tools/call` result.
pub(crate) async fn call_tool(
    running: &Running,
    token: &str,
    tool: &str,
    arguments: Value,
) -> Value {
    let response = call(&running.url, token, tool, arguments).await;
    response
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("tools/call {tool} answered {response}"))
}

/// The text of a tool result's first content block.
pub(crate) fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}
