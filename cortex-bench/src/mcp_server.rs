//! The `mcp-server` role: a third-party MCP server (2026-07-28, stateless,
//! JSON answers) whose one tool does the work of the backends' `read_item`,
//! for the adapter scenario. It accepts one bearer token, [`TOKEN`].

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Request, Response, StatusCode, body::Incoming, header};
use serde_json::{Value, json};

use crate::backend::READ_TOOL;

/// The downstream access token the bench links for `bench-user`.
pub(crate) const TOKEN: &str = "bench-downstream-access-token";
/// The server's id at the gateway.
pub(crate) const ID: &str = "m0";

/// Runs the role: binds loopback, prints `listening on http://ADDR`, serves.
pub(crate) async fn run() -> anyhow::Result<()> {
    let handler = |request| async move { Ok::<_, Infallible>(answer(request).await) };
    crate::serve::serve_loopback(crate::serve::Threads::Shared, move || handler).await
}

async fn answer(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    if !authorized {
        return reply(StatusCode::UNAUTHORIZED, json!({"error": "invalid_token"}));
    }
    let Ok(body) = Limited::new(request.into_body(), 1 << 20).collect().await else {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": "too large"}));
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "not JSON"}));
    };
    let id = message["id"].clone();
    let result = match message["method"].as_str().unwrap_or_default() {
        "server/discover" => json!({
            "resultType": "complete", "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}}, "ttlMs": 0, "cacheScope": "public"
        }),
        "tools/list" => {
            json!({"resultType": "complete", "ttlMs": 0, "cacheScope": "public", "tools": [{
                "name": READ_TOOL,
                "description": "Read one item by its id; returns its name and, when verbose, its tags.",
                "inputSchema": {"type": "object", "properties": {
                    "id": {"type": "string"}, "verbose": {"type": "boolean"}
                }, "required": ["id"]},
                "annotations": {"readOnlyHint": true}
            }]})
        }
        "tools/call" => {
            let args = &message["params"]["arguments"];
            let item_id = args["id"].as_str().unwrap_or_default();
            let tags: Vec<&str> = if args["verbose"].as_bool().unwrap_or(false) {
                vec!["bench", "fixture"]
            } else {
                Vec::new()
            };
            let item = json!({"id": item_id, "name": format!("Item {item_id}"), "tags": tags});
            json!({"resultType": "complete",
                   "content": [{"type": "text", "text": item.to_string()}],
                   "structuredContent": item})
        }
        _ => {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}}),
            );
        }
    };
    reply(
        StatusCode::OK,
        json!({"jsonrpc": "2.0", "id": id, "result": result}),
    )
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
