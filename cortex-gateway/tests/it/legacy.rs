//! The initialize-based revisions, and the scenario both eras share.

use serde_json::{Value, json};

use crate::{
    client::{Client, LEGACY, validate_message},
    support::World,
};

fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The behaviour every revision must show; `make` opens a client for a token.
pub(crate) async fn shared_scenario<F, Fut>(w: &World, make: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Client>,
{
    let mut ana = make(w.token("ana", &["mcp:crm:write"])).await;
    let mut bob = make(w.token("bob", &["mcp:crm:read", "mcp:docs:read"])).await;
    let revision = ana.revision.clone();
    let structured = revision.as_str() >= "2025-06-18";

    // Personas see different catalogs; write implies read.
    let ana_tools = ana.tool_names().await;
    assert_eq!(
        ana_tools,
        [
            "find_tools",
            "whoami",
            "report_missing_capability",
            "list_cortex_tickets",
            "list_cortex_resources",
            "read_cortex_resource",
            "crm_broken_report",
            "crm_count_accounts",
            "crm_export_all",
            "crm_forecast",
            "crm_get_help",
            "crm_log_call",
            "crm_pipeline_chart",
            "crm_search_accounts"
        ],
        "{revision}"
    );
    let bob_tools = bob.tool_names().await;
    assert!(bob_tools.contains(&"docs_search".to_string()));
    assert!(bob_tools.contains(&"crm_search_accounts".to_string()));
    assert!(!bob_tools.contains(&"crm_log_call".to_string()));

    let listed = ana.ok("tools/list", json!({})).await;
    let search = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "crm_search_accounts")
        .unwrap()
        .clone();
    assert_eq!(search["inputSchema"]["type"], "object");
    assert_eq!(
        search.get("outputSchema").is_some(),
        structured,
        "{revision}"
    );

    // Without the scope: refused at the gateway, the backend never sees it.
    let before = w.crm.seen_users().len();
    let r = bob.call("crm_log_call", json!({"query": "x"})).await;
    assert_eq!(r["isError"], true);
    assert!(
        text(&r).starts_with("missing scope mcp:crm:write"),
        "{}",
        text(&r)
    );
    assert!(text(&r).contains("gateway"));
    assert_eq!(w.crm.seen_users().len(), before);

    // With the scope: reaches the backend with the caller's identity.
    let r = ana.call("crm_log_call", json!({"query": "x"})).await;
    assert_eq!(r["isError"], false, "{r:#}");
    assert!(text(&r).contains("\"by\":\"ana\""), "{}", text(&r));
    assert_eq!(r.get("structuredContent").is_some(), structured);
    if structured {
        assert_eq!(r["structuredContent"]["by"], "ana");
    }
    assert_eq!(w.crm.seen_users().last().map(String::as_str), Some("ana"));
    let r = bob
        .call("crm_search_accounts", json!({"query": "acme"}))
        .await;
    assert!(text(&r).contains("\"caller\":\"bob\""));

    // The app's own refusal reads differently from a missing scope.
    let r = ana.call("crm_forecast", json!({})).await;
    assert_eq!(r["isError"], true);
    assert!(
        text(&r).starts_with("denied by crm: only managers"),
        "{}",
        text(&r)
    );
    assert!(text(&r).contains("more scopes will not help"));
    let r = ana.call("crm_export_all", json!({})).await;
    assert_eq!(r["isError"], true);
    assert!(
        text(&r).starts_with("missing scope mcp:crm:admin"),
        "{}",
        text(&r)
    );

    // Bad arguments, a failing backend, a slow backend.
    let r = ana.call("crm_search_accounts", json!({"query": 3})).await;
    assert_eq!(r["isError"], true);
    assert!(text(&r).contains("crm rejected the call"), "{}", text(&r));
    let r = ana.call("crm_broken_report", json!({})).await;
    assert_eq!(r["isError"], true);
    assert!(!text(&r).contains("exploded"));
    assert!(text(&r).contains("HTTP 500"), "{}", text(&r));
    let r = bob.call("docs_slow_export", json!({})).await;
    assert_eq!(r["isError"], true);
    assert!(text(&r).contains("did not answer"), "{}", text(&r));

    // Unknown tool: a protocol error.
    let e = ana
        .err("tools/call", json!({"name": "crm_nope", "arguments": {}}))
        .await;
    assert_eq!(e["code"], -32602);

    // Non-object results become text; rich results pass through.
    let r = ana.call("crm_count_accounts", json!({})).await;
    assert_eq!(text(&r), "42");
    assert!(r.get("structuredContent").is_none());
    let r = ana.call("crm_pipeline_chart", json!({})).await;
    assert_eq!(r["content"][1]["type"], "image");
    let link = &r["content"][2];
    if structured {
        assert_eq!(link["type"], "resource_link");
    } else {
        assert_eq!(link["type"], "text");
    }

    // Prompts and resources, routed to their owner.
    let prompts = ana.ok("prompts/list", json!({})).await;
    assert_eq!(prompts["prompts"][0]["name"], "crm_follow_up");
    let p = ana
        .ok(
            "prompts/get",
            json!({"name": "crm_follow_up", "arguments": {"account": "Acme"}}),
        )
        .await;
    assert_eq!(
        p["messages"][0]["content"]["text"],
        "Write a follow-up to Acme"
    );
    let e = ana.err("prompts/get", json!({"name": "crm_nope"})).await;
    assert_eq!(e["code"], -32602);
    let t = ana.ok("resources/templates/list", json!({})).await;
    assert_eq!(
        t["resourceTemplates"][0]["uriTemplate"],
        "crm://account/{id}"
    );
    // The gateway's own resource is listed and read like any other, live
    // for the caller who reads it.
    let listed = ana.ok("resources/list", json!({})).await;
    let uris: Vec<&str> = listed["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert_eq!(uris, ["cortex://architecture"], "{listed:#}");
    let read = ana
        .ok("resources/read", json!({"uri": "cortex://architecture"}))
        .await;
    assert_eq!(read["contents"][0]["mimeType"], "application/json");
    let doc: Value = serde_json::from_str(read["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(doc["you"]["sub"], "ana", "{doc:#}");
    assert!(
        doc["gateway"]["builtins"]
            .as_array()
            .unwrap()
            .contains(&json!("whoami")),
        "{doc:#}"
    );
    let read = ana
        .ok("resources/read", json!({"uri": "crm://account/7"}))
        .await;
    assert_eq!(read["contents"][0]["uri"], "crm://account/7");
    let e = ana
        .err("resources/read", json!({"uri": "crm://account/404"}))
        .await;
    let not_found = if ana.is_modern() { -32602 } else { -32002 };
    assert_eq!(e["code"], not_found);
    let e = ana
        .err("resources/read", json!({"uri": "nowhere://x"}))
        .await;
    assert_eq!(e["code"], not_found);
    let mut carol = make(w.token("carol", &["mcp:docs:read"])).await;
    let e = carol
        .err("resources/read", json!({"uri": "crm://account/7"}))
        .await;
    assert_eq!(e["code"], -32602);
    assert_eq!(e["data"]["required"], "mcp:crm:read");
    assert!(
        carol.ok("prompts/list", json!({})).await["prompts"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Builtins.
    let me = ana.call("whoami", json!({})).await;
    let me: Value = serde_json::from_str(&text(&me)).unwrap();
    assert_eq!(me["sub"], "ana");
    assert_eq!(me["backends"]["crm"]["sub"], "ana", "{me:#}");
    let found = ana
        .call("find_tools", json!({"query": "account call"}))
        .await;
    let found: Value = serde_json::from_str(&text(&found)).unwrap();
    let names: Vec<&str> = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"crm_log_call") && names.contains(&"crm_search_accounts"),
        "{names:?}"
    );
    let full = ana
        .call(
            "find_tools",
            json!({"names": ["crm_search_accounts", "docs_search"]}),
        )
        .await;
    let full: Value = serde_json::from_str(&text(&full)).unwrap();
    assert_eq!(
        full["tools"][0]["inputSchema"]["properties"]["query"]["type"],
        "string"
    );
    assert_eq!(
        full["unknown"],
        json!(["docs_search"]),
        "ana may not see docs"
    );

    // Context trimming.
    bob.extra_headers = vec![("x-cortex-backends".into(), "docs".into())];
    let trimmed = bob.tool_names().await;
    assert_eq!(
        trimmed,
        [
            "find_tools",
            "whoami",
            "report_missing_capability",
            "list_cortex_tickets",
            "list_cortex_resources",
            "read_cortex_resource",
            "docs_get_help",
            "docs_search",
            "docs_slow_export"
        ]
    );
    let r = bob.call("crm_search_accounts", json!({"query": "a"})).await;
    assert_eq!(
        r["isError"], false,
        "trimming never limits what may be called"
    );
    bob.extra_headers = vec![("x-cortex-tool-mode".into(), "search".into())];
    let compact = bob.ok("tools/list", json!({})).await;
    assert!(
        compact["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["inputSchema"] == json!({"type": "object"}))
    );
    bob.extra_headers.clear();
}

#[tokio::test]
async fn legacy_revisions_share_the_scenario() {
    let w = World::start().await;
    for revision in LEGACY {
        let url = w.url.clone();
        shared_scenario(&w, |token| {
            let url = url.clone();
            async move { Client::legacy(&url, &token, revision).await }
        })
        .await;
    }
}

#[tokio::test]
async fn sessions_and_headers() {
    let w = World::start().await;
    let ana_token = w.token("ana", &["mcp:crm:read"]);
    let mut ana = Client::legacy(&w.url, &ana_token, "2025-11-25").await;
    let r = ana.ok("ping", json!({})).await;
    assert_eq!(r, json!({}));
    let init = ana.send("initialize", json!({"protocolVersion": "2024-01-01", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}})).await;
    assert_eq!(
        init.body["result"]["protocolVersion"], "2025-11-25",
        "unknown versions get our newest"
    );
    assert_ne!(
        init.headers["mcp-session-id"].to_str().unwrap(),
        ana.session.as_deref().unwrap()
    );
    let instructions = init.body["result"]["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("Backends up: crm, docs"),
        "{instructions}"
    );
    assert!(instructions.contains("_get_help"));

    // Missing session: 400; unknown: 404; someone else's: 404.
    let session = ana.session.take();
    let r = ana.send("tools/list", json!({})).await;
    assert_eq!(r.status, 400);
    ana.session = Some("not-a-session".into());
    assert_eq!(ana.send("tools/list", json!({})).await.status, 404);
    ana.session = session.clone();
    // Refusals keep the request id, so they are valid even where `id` is required.
    let mut older = Client::legacy(&w.url, &ana_token, "2025-06-18").await;
    older.session = None;
    let r = older.send("tools/list", json!({})).await;
    assert_eq!(r.status, 400);
    assert!(r.body["id"].is_i64());
    let mut eve = Client::legacy(&w.url, &w.token("eve", &["mcp:crm:read"]), "2025-11-25").await;
    eve.session = session.clone();
    assert_eq!(eve.send("tools/list", json!({})).await.status, 404);

    // MCP-Protocol-Version: unsupported: 400 (see
    // `a_session_accepts_every_supported_protocol_version_header`).
    let (body, _) = ana.envelope("tools/list", json!({}));
    ana.revision = "1999-01-01".into();
    let r = ana.post_raw(&body, &[]).await;
    assert_eq!(r.status, 400);
    validate_message("2025-11-25", None, &r.body);
    ana.revision = "2025-11-25".into();
    assert_eq!(ana.post_raw(&body, &[]).await.status, 200);

    // Batches only in 2025-03-26.
    let batch = json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]);
    assert_eq!(ana.post_raw(&batch, &[]).await.status, 400);
    let old = Client::legacy(&w.url, &ana_token, "2025-03-26").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {"protocolVersion": "2025-03-26"}}
    ]);
    let r = old.post_raw(&batch, &[]).await;
    assert_eq!(r.status, 200);
    crate::client::assert_valid("2025-03-26", "JSONRPCBatchResponse", &r.body);
    let answers = r.body.as_array().unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(
        answers[2]["error"]["code"], -32600,
        "initialize may not be batched"
    );

    // Unknown method: -32601. DELETE ends the session.
    let e = ana.err("logging/setLevel", json!({"level": "info"})).await;
    assert_eq!(e["code"], -32601);
    let r = ana
        .http
        .delete(&w.url)
        .bearer_auth(&ana_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "DELETE without a session");
    let r = ana
        .http
        .delete(&w.url)
        .bearer_auth(&ana_token)
        .header("mcp-session-id", session.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(ana.send("tools/list", json!({})).await.status, 404);
}

/// What the official conformance scenario `server-sse-multiple-streams`
/// does: a 2025-11-25 session sends requests whose `MCP-Protocol-Version`
/// names another supported revision. They are answered (the session's
/// revision governs); a version the gateway does not know is refused with
/// a message that does not list it as supported.
#[tokio::test]
async fn a_session_accepts_every_supported_protocol_version_header() {
    let w = World::start().await;
    let token = w.token("ana", &["mcp:crm:read"]);
    let ana = Client::legacy(&w.url, &token, "2025-11-25").await;
    let session = ana.session.clone().unwrap();
    let list = |version: &'static str| {
        let request = ana
            .http
            .post(&w.url)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", version)
            .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}));
        async move {
            let r = request.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    for version in LEGACY {
        let (status, body) = list(version).await;
        assert_eq!(status, 200, "{version}: {body}");
        validate_message("2025-11-25", Some("tools/list"), &body);
        assert!(
            body["result"]["tools"]
                .as_array()
                .is_some_and(|t| !t.is_empty())
        );
    }
    let (status, body) = list("2024-01-01").await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`2024-01-01`"), "{message}");
    let supported = body["error"]["data"]["supported"].as_array().unwrap();
    assert!(!supported.contains(&json!("2024-01-01")));
    assert!(supported.contains(&json!("2025-03-26")));
}
