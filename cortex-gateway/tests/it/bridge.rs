//! `cortex-gateway stdio`: the bridge's own errors reach the client as
//! JSON-RPC errors of the request they concern, saying what to do; a
//! 2026-07-28 request is cancelled by closing its stream. (The official
//! clients through the bridge: e2e `sdk_clients::*_over_the_stdio_bridge`.)

use cortex_gateway::bridge::{self, BridgeOptions, TokenSource};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

use crate::support::World;

/// A 2026-07-28 request `method` with `id`.
fn modern(id: u64, method: &str, params: Value) -> String {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn fixed(token: &str) -> TokenSource {
    TokenSource::Fixed(std::sync::Arc::new(zeroize::Zeroizing::new(
        token.to_owned(),
    )))
}

/// Runs the bridge on `input` until it ends; every line it wrote.
async fn bridged(url: &str, token: TokenSource, input: String) -> Vec<Value> {
    let options = BridgeOptions::new(url, token).unwrap();
    let (output, mut read) = tokio::io::duplex(1 << 20);
    let input = tokio::io::BufReader::new(std::io::Cursor::new(input.into_bytes()));
    bridge::run(options, input, output).await.unwrap();
    let mut text = String::new();
    read.read_to_string(&mut text).await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn a_refused_token_is_an_error_of_that_request_naming_what_to_set() {
    let world = World::start().await;
    let lines = bridged(
        &world.url,
        fixed("not-a-token"),
        modern(1, "tools/list", json!({})) + "\n",
    )
    .await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], 1, "{lines:?}");
    let message = lines[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("HTTP 401"), "{message}");
    assert!(message.contains("CORTEX_TOKEN"), "{message}");
    assert!(!message.contains("not-a-token"), "{message}");
}

#[tokio::test]
async fn a_bad_line_gets_a_parse_error_and_the_next_line_is_served() {
    let world = World::start().await;
    let token = world.token("ann", &["mcp:crm:read", "mcp:docs:read"]);
    let input = format!(
        "this is not json\n\n[1,2]\n{}\n",
        modern(2, "tools/list", json!({}))
    );
    let lines = bridged(&world.url, fixed(&token), input).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    for refused in &lines[..2] {
        assert_eq!(refused["error"]["code"], -32700, "{lines:?}");
        assert_eq!(refused["id"], Value::Null, "{lines:?}");
    }
    assert_eq!(lines[2]["id"], 2, "{lines:?}");
    let tools = lines[2]["result"]["tools"].as_array().unwrap();
    assert!(
        tools.iter().any(|t| t["name"] == "docs_search"),
        "{tools:?}"
    );
}

#[tokio::test]
async fn an_unreachable_gateway_is_an_error_of_each_request() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/mcp?secret=1");
    let input = modern(3, "tools/list", json!({})) + "\n" + &modern(4, "tools/list", json!({}));
    let mut lines = bridged(&url, TokenSource::None, input).await;
    lines.sort_by_key(|l| l["id"].as_u64());
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, id) in lines.iter().zip([3, 4]) {
        assert_eq!(line["id"], id, "{lines:?}");
        let message = line["error"]["message"].as_str().unwrap();
        assert!(message.contains("cannot reach the gateway"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
}

#[tokio::test]
async fn a_cancelled_2026_request_gets_no_answer() {
    let world = World::start().await;
    let token = world.token("ann", &["mcp:docs:read"]);
    let cancel = json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": 5, "reason": "the user gave up"},
    });
    let input = format!(
        "{}\n{cancel}\n{}\n",
        modern(
            5,
            "tools/call",
            json!({"name": "docs_slow_export", "arguments": {}})
        ),
        modern(6, "tools/list", json!({})),
    );
    let lines = bridged(&world.url, fixed(&token), input).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], 6, "{lines:?}");
}

#[test]
fn a_plaintext_url_to_a_remote_host_is_refused() {
    let refused = BridgeOptions::new("http://mcp.example.com/mcp", TokenSource::None).unwrap_err();
    assert!(refused.to_string().contains("https://"), "{refused}");
    assert!(BridgeOptions::new("https://mcp.example.com/mcp", TokenSource::None).is_ok());
    let debug = format!("{:?}", fixed("very-secret-token"));
    assert!(!debug.contains("very-secret"), "{debug}");
}
