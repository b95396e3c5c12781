//! The official Rust SDK client (`rmcp`) against Meridian, every persona,
//! in the 2026-07-28 era (`server/discover`) and the 2025-11-25 era
//! (`initialize`). Its results go through the same oracle as the
//! TypeScript and Python clients.

use meridian::firm::Persona;
use rmcp::{
    ServiceExt as _,
    model::{
        CallToolRequestParams, ClientCapabilities, ClientConfig, GetPromptRequestParams,
        Implementation, ProtocolVersion, ReadResourceRequestParams,
    },
    service::{ClientLifecycleMode, ClientServiceExt as _, RoleClient, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

use crate::meridian::{check, start, steps};

/// A connected rmcp client.
pub(crate) type Client = RunningService<RoleClient, ClientConfig>;

/// Connects rmcp to `url` with `token`: `server/discover` at 2026-07-28
/// when `modern`, else `initialize` at 2025-11-25.
pub(crate) async fn connect(url: &str, token: &str, modern: bool) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned()),
    );
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("cortex-e2e-rmcp", "0.1.0"),
    );
    let connected = if modern {
        config
            .serve_with_lifecycle(
                transport,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
    } else {
        config
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
            .serve(transport)
            .await
    };
    connected.unwrap_or_else(|e| panic!("rmcp cannot connect to {url} (modern: {modern}): {e}"))
}

/// `tools/call` of `name` with `arguments` (an object, or null for none):
/// the result as JSON. A JSON-RPC error fails the test.
pub(crate) async fn call_tool(client: &Client, name: &str, arguments: Value) -> Value {
    let mut params = CallToolRequestParams::new(name.to_owned());
    if let Value::Object(arguments) = arguments {
        params = params.with_arguments(arguments);
    }
    let result = client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("tools/call {name}: {e}"));
    serde_json::to_value(result).expect("serializable")
}

/// The JSON a tool printed as its one text block.
pub(crate) fn text_json(result: &Value) -> Value {
    let text = result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text block in {result}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn object(value: &Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn recorded<T: serde::Serialize, E: std::fmt::Display>(op: &str, result: Result<T, E>) -> Value {
    match result {
        Ok(value) => {
            json!({"op": op, "ok": true, "result": serde_json::to_value(value).expect("serializable")})
        }
        Err(error) => json!({"op": op, "ok": false, "error": {"message": error.to_string()}}),
    }
}

/// Runs the plan of `steps` (the format of `clients/ts_client.mjs`) with rmcp.
async fn run_plan(client: &Client, plan: &Value) -> Value {
    let mut out = Vec::new();
    for step in plan.as_array().into_iter().flatten() {
        let op = step["op"].as_str().unwrap_or_default();
        let entry = match op {
            "list_tools" => recorded(
                op,
                client
                    .list_all_tools()
                    .await
                    .map(|tools| json!({"tools": tools})),
            ),
            "call_tool" => {
                let params = CallToolRequestParams::new(
                    step["name"].as_str().unwrap_or_default().to_owned(),
                )
                .with_arguments(object(&step["arguments"]));
                recorded(op, client.call_tool(params).await)
            }
            "get_prompt" => {
                let params = GetPromptRequestParams::new(step["name"].as_str().unwrap_or_default())
                    .with_arguments(object(&step["arguments"]));
                recorded(op, client.get_prompt(params).await)
            }
            "read_resource" => {
                let params =
                    ReadResourceRequestParams::new(step["uri"].as_str().unwrap_or_default());
                recorded(op, client.read_resource(params).await)
            }
            other => panic!("rmcp plan: unknown op {other}"),
        };
        out.push(entry);
    }
    json!({ "steps": out })
}

async fn every_persona(modern: bool, negotiated: ProtocolVersion) {
    let running = start().await;
    let label = format!("rmcp 3.11 ({negotiated})");
    for persona in Persona::ALL {
        let client = connect(&running.url, running.tokens.get(persona), modern).await;
        let version = client.peer_info().map(|info| info.protocol_version.clone());
        assert_eq!(
            version,
            Some(negotiated.clone()),
            "{label} as {}",
            persona.key()
        );
        let output = run_plan(&client, &steps(persona)).await;
        check(&label, persona, &output);
        let _ = client.cancel().await;
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_rmcp_2026_07_28() {
    every_persona(true, ProtocolVersion::V_2026_07_28).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_rmcp_2025_11_25() {
    every_persona(false, ProtocolVersion::V_2025_11_25).await;
}
