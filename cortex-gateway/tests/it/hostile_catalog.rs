//! A caller with one valid token who means harm, against the catalog, the
//! audit trail and the MCP methods: what they send must not grow the
//! gateway's memory or its audit lines beyond the documented bounds, nor
//! reach data their scopes do not cover.

use cortex_gateway::{
    config::GatewayConfig,
    testing::{
        MAX_LINE_BYTES, PAGE_CACHE_BYTES, PAGE_CACHE_ENTRIES, RENDER_CACHE_BYTES,
        RENDER_CACHE_ENTRIES, TOOL_CHARS, UNKNOWN_METHOD,
    },
};
use serde_json::{Value, json};

use crate::{
    client::Client,
    controls::{audit_lines, temp_dir},
    support::{Options, World},
};

/// A world without a rate limit (these tests send thousands of requests
/// as one caller), with `more` applied to the configuration.
async fn hostile_world(more: impl FnOnce(&mut GatewayConfig) + Send + 'static) -> World {
    World::start_with(Options {
        configure: Some(Box::new(move |config: &mut GatewayConfig| {
            config.controls.rate_limit_per_minute = 0;
            more(config);
        })),
        ..Options::default()
    })
    .await
}

/// Thousands of `tools/list` requests, each naming a different unknown
/// backend in `X-Cortex-Backends`: they all share the one view of the
/// known backends they name (the caches do not grow), and every answer is
/// that view.
#[tokio::test]
async fn junk_backend_filters_do_not_grow_the_list_caches() {
    let audit = temp_dir("junk").join("audit.jsonl");
    let w = hostile_world(move |c| c.controls.audit_file = Some(audit)).await;
    let mut c = Client::modern(
        &w.url,
        &w.token("mallory", &["mcp:crm:read", "mcp:docs:read"]),
    );
    let (body, headers) = c.envelope("tools/list", json!({}));
    let mut headers: Vec<(String, String)> = headers;
    headers.push(("x-cortex-backends".into(), String::new()));
    let names = |reply: &Value| -> Vec<String> {
        reply["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut expected: Option<Vec<String>> = None;
    for n in 0..3_000 {
        let filter = match n % 3 {
            0 => format!("crm,junk{n}"),
            1 => format!("junk{n}, crm ,crm"),
            _ => format!("crm,{}", "j".repeat(n)),
        };
        headers.last_mut().unwrap().1 = filter;
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let reply = c.post_raw(&body, &h).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let got = names(&reply.body);
        match &expected {
            None => {
                assert!(got.iter().any(|n| n == "crm_search_accounts"), "{got:?}");
                assert!(!got.iter().any(|n| n.starts_with("docs_")), "{got:?}");
                expected = Some(got);
            }
            Some(e) => assert_eq!(&got, e, "request {n}"),
        }
    }
    let usage = w.gateway.catalog().cache_usage();
    assert_eq!(usage.renders.entries, 1, "{usage:?}");
    assert_eq!(usage.pages.entries, 1, "{usage:?}");
    assert!(
        usage.renders.bytes <= RENDER_CACHE_BYTES && usage.renders.entries <= RENDER_CACHE_ENTRIES
    );
    assert!(usage.pages.bytes <= PAGE_CACHE_BYTES && usage.pages.entries <= PAGE_CACHE_ENTRIES);
}

/// A 300 KB tool name and a 600 KB (escaped) unknown method name: the audit lines
/// stay within [`MAX_LINE_BYTES`], the tool name is cut to [`TOOL_CHARS`]
/// characters and marked as cut, and the method is recorded as
/// [`UNKNOWN_METHOD`], never as sent.
#[tokio::test]
async fn huge_names_leave_bounded_audit_lines() {
    let audit = temp_dir("audit").join("audit.jsonl");
    let path = audit.clone();
    let w = hostile_world(move |c| c.controls.audit_file = Some(path)).await;
    let token = w.token("mallory", &["mcp:crm:read"]);
    let c = Client::legacy(&w.url, &token, "2025-11-25").await;
    let huge_tool = "t".repeat(300_000);
    let call = c
        .post_raw(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": huge_tool, "arguments": {}}}),
            &[],
        )
        .await;
    assert_eq!(call.status, 200);
    assert!(call.body.get("error").is_some(), "{:?}", call.body);
    let huge_method = format!("x/{}", "\u{1}".repeat(100_000));
    let unknown = c
        .post_raw(
            &json!({"jsonrpc": "2.0", "id": 2, "method": huge_method, "params": {}}),
            &[],
        )
        .await;
    assert_eq!(unknown.body["error"]["code"], -32601, "{:?}", unknown.body);
    // initialize, notifications/initialized, the call, the unknown method.
    let lines = audit_lines(&audit, 4).await;
    for line in std::fs::read_to_string(&audit).unwrap().lines() {
        assert!(line.len() <= MAX_LINE_BYTES, "{} bytes", line.len());
    }
    let call = lines
        .iter()
        .find(|l| l["method"] == "tools/call")
        .expect("the call's line");
    assert_eq!(call["tool"].as_str().unwrap(), &huge_tool[..TOOL_CHARS]);
    assert_eq!(call["tool_truncated"], true);
    let unknown = lines.last().unwrap();
    assert_eq!(unknown["method"], UNKNOWN_METHOD, "{unknown}");
    assert!(unknown.get("tool_truncated").is_none());
    // A known tool's line is not marked.
    let mut modern = Client::modern(&w.url, &token);
    modern
        .call("crm_search_accounts", json!({"query": "a"}))
        .await;
    let lines = audit_lines(&audit, 5).await;
    let known = lines.last().unwrap();
    assert_eq!(known["tool"], "crm_search_accounts");
    assert!(known.get("tool_truncated").is_none(), "{known}");
}

/// `whoami` asks only the backends the caller holds a scope for: a backend
/// the caller has no scope for never receives the caller's token.
#[tokio::test]
async fn whoami_asks_only_backends_the_caller_has_a_scope_for() {
    let w = hostile_world(|_| {}).await;
    let mut c = Client::modern(&w.url, &w.token("mallory", &["mcp:crm:read"]));
    let (crm_before, docs_before) = (w.crm.seen_users().len(), w.docs.seen_users().len());
    let r = c.call("whoami", json!({})).await;
    assert_eq!(r["isError"], false, "{r}");
    let backends = &r["structuredContent"]["backends"];
    assert!(backends.get("crm").is_some(), "{backends}");
    assert!(backends.get("docs").is_none(), "{backends}");
    assert_eq!(w.crm.seen_users().len(), crm_before + 1);
    assert_eq!(
        w.docs.seen_users().len(),
        docs_before,
        "the caller's token reached a backend it holds no scope for"
    );
    // With a docs scope, docs is asked too.
    let mut both = Client::modern(&w.url, &w.token("ana", &["mcp:crm:read", "mcp:docs:read"]));
    let r = both.call("whoami", json!({})).await;
    assert!(
        r["structuredContent"]["backends"].get("docs").is_some(),
        "{r}"
    );
    assert_eq!(w.docs.seen_users().len(), docs_before + 1);
}

/// A CRM backend that serves public and restricted resources under one
/// scheme, each template with its own scope.
fn crm_with_two_templates(w: &World) -> cortex_backend::Backend {
    use std::collections::BTreeMap;

    use cortex_backend::{
        Auth, Backend, ToolFn,
        contract::{ReadResourceResult, ResourceContent, ResourceTemplate},
    };
    let template = |uri: &str, scope: &str| ResourceTemplate {
        uri_template: uri.into(),
        name: uri.into(),
        description: None,
        mime_type: Some("text/plain".into()),
        scope: scope.into(),
    };
    let read = |_ctx, uri: String, _vars: BTreeMap<String, String>| async move {
        Ok(ReadResourceResult {
            contents: vec![ResourceContent {
                uri,
                mime_type: "text/plain".into(),
                text: Some("contents".into()),
                blob: None,
            }],
        })
    };
    Backend::builder("crm")
        .auth(Auth::new(w.issuer.auth_config(&w.url, &[crate::support::TECH])).unwrap())
        .tool(
            ToolFn::new("count_accounts")
                .scope("mcp:crm:read")
                .description("How many accounts exist.")
                .handler(
                    |_ctx: cortex_backend::Ctx<()>, _args: crate::support::NoArgs| async move {
                        Ok::<u32, cortex_backend::ToolError>(1)
                    },
                ),
        )
        .resource_template(template("crm://public/{id}", "mcp:crm:read"), read)
        .resource_template(template("crm://salaries/{id}", "mcp:crm:admin"), read)
        .build()
        .unwrap()
}

/// `resources/read` applies the scope of the template that matches the
/// URI: a caller who may read one template of a scheme cannot read
/// another template's resources, and a URI no template matches is not
/// found. Refused reads never reach the backend.
#[tokio::test]
async fn resources_read_checks_the_scope_of_the_matching_template() {
    let w = hostile_world(|_| {}).await;
    w.crm.replace(crm_with_two_templates(&w));
    w.gateway.refresh_now().await;
    let mut c = Client::modern(&w.url, &w.token("mallory", &["mcp:crm:read"]));
    let listed = c.ok("resources/templates/list", json!({})).await;
    let visible: Vec<&str> = listed["resourceTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uriTemplate"].as_str().unwrap())
        .collect();
    assert_eq!(visible, ["crm://public/{id}"]);
    let read = c
        .ok("resources/read", json!({"uri": "crm://public/7"}))
        .await;
    assert_eq!(read["contents"][0]["text"], "contents");
    let seen = w.crm.seen_users().len();
    let refused = c
        .err("resources/read", json!({"uri": "crm://salaries/7"}))
        .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("mcp:crm:admin"),
        "{refused}"
    );
    assert_eq!(refused["data"]["required"], "mcp:crm:admin");
    assert_eq!(
        w.crm.seen_users().len(),
        seen,
        "the gateway passed a read of a template the caller has no scope for"
    );
    let unknown = c
        .err("resources/read", json!({"uri": "crm://elsewhere/7"}))
        .await;
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("no resource template matches"),
        "{unknown}"
    );
    assert_eq!(
        w.crm.seen_users().len(),
        seen,
        "a refused read reached the backend"
    );
    // The admin scope reads the restricted template.
    let mut admin = Client::modern(&w.url, &w.token("ana", &["mcp:crm:admin"]));
    admin
        .ok("resources/read", json!({"uri": "crm://salaries/7"}))
        .await;
}

/// A contract backend with a tool list that can change, answering every
/// tool call with its own id (enough to see which backend a call reached).
struct ListBackend {
    url: String,
    tools: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    /// Answers 503 to everything while set.
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ListBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ListBackend {
    async fn start(id: &'static str, names: &[&str]) -> Self {
        let tools = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (served, is_down) = (tools.clone(), down.clone());
        let router = axum::Router::new().route(
            "/api/cortex/backend",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (served, is_down) = (served.clone(), is_down.clone());
                async move {
                    if is_down.load(std::sync::atomic::Ordering::SeqCst) {
                        return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
                    }
                    let request: Value = serde_json::from_slice(&body).unwrap();
                    let answer = match request["method"].as_str().unwrap() {
                        "list_tools" => json!({"tools": *served.lock().unwrap()}),
                        "list_prompts" => json!({"prompts": []}),
                        "list_resource_templates" => json!({"resourceTemplates": []}),
                        _ => json!({"from": id}),
                    };
                    Ok(axum::Json(answer))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let backend = Self {
            url,
            tools,
            down,
            task,
        };
        backend.offer(tools_of(id, names));
        backend
    }

    fn offer(&self, tools: Vec<Value>) {
        *self.tools.lock().unwrap() = tools;
    }
}

/// Tool descriptors named `names`, described as `backend`'s.
fn tools_of(backend: &str, names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| {
            json!({"name": n, "scope": "mcp:any:read",
                "description": format!("{n} of {backend}"), "params": {}})
        })
        .collect()
}

/// Two unprefixed backends; the one first in the configuration adds, at a
/// later refresh, a tool whose name the other already serves. The other
/// keeps it: calls still reach it, the newcomer's tool is refused (the
/// catalog, the metrics and the operator endpoint report the clash), and
/// `block` mode never approves the newcomer's tool as new.
#[tokio::test]
async fn a_later_tool_cannot_take_over_another_backends_name() {
    use cortex_gateway::{Gateway, IntegrityMode as Mode, config::BackendConfig};

    let alpha = ListBackend::start("alpha", &["alpha_only"]).await;
    let beta = ListBackend::start("beta", &["shared"]).await;
    let issuer = cortex_backend::testing::TestIssuer::start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/mcp");
    let dir = temp_dir("clash");
    let baseline = dir.join("baseline.json");
    let admin_secret = "an-admin-secret-for-the-clash-test-0123456789";
    let mut config = GatewayConfig::new(url.clone(), issuer.issuer(), crate::support::TECH);
    config.oauth.jwks_url = Some(issuer.jwks_url());
    config.controls.rate_limit_per_minute = 0;
    config.controls.audit_file = Some(dir.join("audit.jsonl"));
    config.controls.tool_integrity = Mode::Block;
    config.controls.tool_baseline = Some(baseline.clone());
    config.controls.admin_secret = Some(admin_secret.into());
    for (id, b) in [("alpha", &alpha), ("beta", &beta)] {
        let mut backend = BackendConfig::new(id, &b.url);
        backend.prefix = false;
        config.backends.push(backend);
    }
    let gateway = Gateway::new(config).await.unwrap();
    let server = tokio::spawn(gateway.clone().serve(listener, std::future::pending()));
    gateway.wait_ready().await.unwrap();
    let token = issuer
        .token(&url)
        .sub("ana")
        .scopes(["mcp:any:read"])
        .mint();
    let mut c = Client::modern(&url, &token);
    assert_eq!(
        c.call("shared", json!({})).await["structuredContent"]["from"],
        "beta"
    );

    alpha.offer(tools_of("alpha", &["alpha_only", "shared"]));
    gateway.refresh_now().await;
    let catalog = gateway.catalog();
    assert_eq!(catalog.tool("shared").unwrap().backend, "beta");
    assert_eq!(
        catalog.tool("shared").unwrap().definition["description"],
        "shared of beta"
    );
    assert_eq!(catalog.clashes.len(), 1, "{:?}", catalog.clashes);
    let clash = &catalog.clashes[0];
    assert_eq!(
        (
            clash.tool.as_str(),
            clash.owner.as_str(),
            clash.refused.as_str()
        ),
        ("shared", "beta", "alpha")
    );
    assert!(catalog.warnings.iter().any(|w| w.contains("not served")));
    assert_eq!(
        c.call("shared", json!({})).await["structuredContent"]["from"],
        "beta"
    );

    // Never approved as new: the baseline knows beta's `shared` only.
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&baseline).unwrap()).unwrap();
    assert!(
        file["approved"]["alpha"].get("shared").is_none(),
        "{file:#}"
    );
    assert!(file["approved"]["beta"].get("shared").is_some(), "{file:#}");

    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("cortex_catalog_name_clashes 1"),
        "{metrics}"
    );
    let admin: Value = http
        .get(format!("{base}/admin/tool-integrity"))
        .bearer_auth(admin_secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        admin["clashes"],
        json!([{"tool": "shared", "owner": "beta", "refused": "alpha"}])
    );

    // While beta is unreachable, alpha still cannot take the name.
    beta.down.store(true, std::sync::atomic::Ordering::SeqCst);
    gateway.refresh_now().await;
    let catalog = gateway.catalog();
    assert!(
        catalog.tool("shared").is_none(),
        "taken over while its owner was down"
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&baseline).unwrap()).unwrap();
    assert!(
        file["approved"]["alpha"].get("shared").is_none(),
        "{file:#}"
    );
    server.abort();
}

/// A symbolic link planted at the audit path stops the start with an error
/// naming the variable, and its target is never written.
#[cfg(unix)]
#[tokio::test]
async fn a_link_at_the_audit_path_stops_the_start() {
    let dir = temp_dir("audit-link");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let link = dir.join("audit.jsonl");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let issuer = cortex_backend::testing::TestIssuer::start().await.unwrap();
    let mut config = GatewayConfig::new(
        "http://127.0.0.1:9/mcp",
        issuer.issuer(),
        crate::support::TECH,
    );
    config.oauth.jwks_url = Some(issuer.jwks_url());
    config.controls.audit_file = Some(link);
    config
        .backends
        .push(cortex_gateway::config::BackendConfig::new(
            "crm",
            "http://127.0.0.1:9",
        ));
    match cortex_gateway::Gateway::new(config).await {
        Err(cortex_gateway::GatewayError::Config(e)) => {
            assert_eq!(e.variable, "CORTEX_AUDIT_FILE");
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("the gateway started with a link at its audit path"),
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

/// `find_tools` searches for at most 32 distinct words and describes at
/// most 100 names, however many a caller sends, and says how many it
/// ignored.
#[tokio::test]
async fn find_tools_bounds_its_words_and_names() {
    let w = hostile_world(|_| {}).await;
    let mut c = Client::modern(&w.url, &w.token("mallory", &["mcp:crm:read"]));
    // 40 filler words, repeated, then a word that would match.
    let filler: Vec<String> = (0..40).map(|i| format!("zz{i}")).collect();
    let query = format!("{} {} accounts", filler.join(" "), filler.join(" "));
    let r = c.call("find_tools", json!({"query": query})).await;
    let out = &r["structuredContent"];
    assert_eq!(out["matches"], json!([]), "{out}");
    // Eight fillers past the 32nd, twice, and the word that would match.
    assert_eq!(out["ignoredWords"], 17, "{out}");
    let r = c
        .call("find_tools", json!({"query": "zz1 zz1 ACCOUNTS"}))
        .await;
    assert!(r["structuredContent"].get("ignoredWords").is_none(), "{r}");
    assert_eq!(
        r["structuredContent"]["matches"].as_array().unwrap().len(),
        2,
        "{r}"
    );
    let mut names = vec![json!("crm_count_accounts"); 150];
    names.push(json!("crm_search_accounts"));
    let r = c.call("find_tools", json!({"names": names})).await;
    let out = &r["structuredContent"];
    assert_eq!(out["tools"].as_array().unwrap().len(), 100, "{out}");
    assert_eq!(out["ignoredNames"], 51);
}
