//! Third-party MCP servers as the second kind of upstream: small
//! in-process MCP servers (both eras, JSON and SSE answers, stateful and
//! stateless) behind the gateway, with grants in a real vault.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use cortex_gateway::{
    config::{GatewayConfig, McpServerConfig},
    vault::{Grant, Secret, Vault, VaultConfig, VaultKeys, VaultStorage},
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::{
    client::Client,
    support::{Options, World},
};

const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// How a fake server speaks.
#[derive(Clone, Copy)]
struct Style {
    /// 2026-07-28 (`server/discover`) rather than `initialize`.
    modern: bool,
    /// Answers as `text/event-stream` (a notification, then the response,
    /// and the stream left open).
    sse: bool,
    /// Legacy: issues `Mcp-Session-Id` and insists on it.
    stateful: bool,
    /// `tools/list` needs a token.
    list_needs_token: bool,
}

/// A small MCP server: tools `whoami` (read-only: the linked account),
/// `close_issue` (writes), `big` (a large answer), `hang` (never answers),
/// `fail` (a JSON-RPC error); `tools/list` in two pages.
struct Fake {
    style: Style,
    /// Accepted access tokens and their accounts.
    tokens: HashMap<String, String>,
    sessions: Mutex<HashSet<String>>,
    initializes: AtomicUsize,
    discovers: AtomicUsize,
    /// Every `Authorization` header seen ("" when none).
    authorizations: Mutex<Vec<String>>,
    /// `traceparent` of each `tools/call`: the header's and `_meta`'s.
    traces: Mutex<Vec<(Option<String>, Option<String>)>>,
    next_session: AtomicUsize,
}

struct FakeServer {
    fake: Arc<Fake>,
    url: String,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    async fn start(style: Style, tokens: &[(&str, &str)]) -> Self {
        let fake = Arc::new(Fake {
            style,
            tokens: tokens
                .iter()
                .map(|(t, a)| (t.to_string(), a.to_string()))
                .collect(),
            sessions: Mutex::new(HashSet::new()),
            initializes: AtomicUsize::new(0),
            discovers: AtomicUsize::new(0),
            authorizations: Mutex::new(Vec::new()),
            traces: Mutex::new(Vec::new()),
            next_session: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/mcp", post(serve))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            fake,
            url: format!("http://{addr}/mcp"),
            task,
        }
    }

    fn authorizations(&self) -> Vec<String> {
        self.fake.authorizations.lock().unwrap().clone()
    }

    fn initializes(&self) -> usize {
        self.fake.initializes.load(Ordering::SeqCst)
    }

    /// Ends every session (the next request on one gets 404).
    fn forget_sessions(&self) {
        self.fake.sessions.lock().unwrap().clear();
    }
}

fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        ),
    )
        .into_response()
}

async fn serve(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let message: Value = serde_json::from_slice(&body).unwrap();
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let method = message["method"].as_str().unwrap_or_default().to_string();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    fake.authorizations.lock().unwrap().push(auth.clone());
    if method == "tools/call" {
        let header = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let meta = message["params"]["_meta"]["traceparent"]
            .as_str()
            .map(String::from);
        fake.traces.lock().unwrap().push((header, meta));
    }
    let account = auth
        .strip_prefix("Bearer ")
        .and_then(|t| fake.tokens.get(t))
        .cloned();
    // A server that lists without a token lets the handshake through too.
    let open = !fake.style.list_needs_token
        && matches!(
            method.as_str(),
            "tools/list" | "server/discover" | "initialize" | "notifications/initialized"
        );
    if account.is_none() && !open {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "",
        )
            .into_response();
    }
    let style = fake.style;
    if style.modern {
        if method != "server/discover"
            && headers
                .get("mcp-protocol-version")
                .is_none_or(|v| v != "2026-07-28")
        {
            return rpc_error(StatusCode::BAD_REQUEST, &id, -32020, "header mismatch");
        }
        if message["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] != "2026-07-28" {
            return rpc_error(StatusCode::BAD_REQUEST, &id, -32602, "no _meta");
        }
    } else if method == "server/discover" {
        fake.discovers.fetch_add(1, Ordering::SeqCst);
        return if style.stateful {
            rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                -32000,
                "Bad Request: Server not initialized",
            )
        } else {
            rpc_error(StatusCode::OK, &id, -32601, "Method not found")
        };
    } else if method == "initialize" {
        fake.initializes.fetch_add(1, Ordering::SeqCst);
        let mut response = axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake", "version": "1"}
        }}))
        .into_response();
        if style.stateful {
            let session = format!("s-{}", fake.next_session.fetch_add(1, Ordering::SeqCst));
            fake.sessions.lock().unwrap().insert(session.clone());
            response
                .headers_mut()
                .insert("mcp-session-id", session.parse().unwrap());
        }
        return response;
    } else if style.stateful {
        match headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            None => return rpc_error(StatusCode::BAD_REQUEST, &Value::Null, -32000, "no session"),
            Some(s) if !fake.sessions.lock().unwrap().contains(s) => {
                return rpc_error(
                    StatusCode::NOT_FOUND,
                    &Value::Null,
                    -32001,
                    "Session not found",
                );
            }
            Some(_) => {}
        }
        if headers
            .get("mcp-protocol-version")
            .is_none_or(|v| v != "2025-06-18")
        {
            return rpc_error(StatusCode::BAD_REQUEST, &id, -32000, "bad version header");
        }
    }
    if method == "notifications/initialized" {
        return StatusCode::ACCEPTED.into_response();
    }
    let result = match method.as_str() {
        "server/discover" => {
            fake.discovers.fetch_add(1, Ordering::SeqCst);
            json!({"resultType": "complete", "supportedVersions": ["2026-07-28"],
                   "capabilities": {"tools": {}}, "ttlMs": 0, "cacheScope": "private"})
        }
        "tools/list" => match message["params"]["cursor"].as_str() {
            None => json!({"tools": [
                {"name": "whoami", "description": "Who the server thinks you are",
                 "inputSchema": {"type": "object"},
                 "outputSchema": {"type": "object", "properties": {"account": {"type": "string"}}},
                 "annotations": {"readOnlyHint": true}},
                {"name": "close_issue", "description": "Close an issue",
                 "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}},
                 "annotations": {"destructiveHint": false}}
            ], "nextCursor": "page-2"}),
            Some("page-2") => json!({"tools": [
                {"name": "big", "description": "A large answer", "inputSchema": {"type": "object"},
                 "annotations": {"readOnlyHint": true}},
                {"name": "hang", "description": "Never answers", "inputSchema": {"type": "object"},
                 "annotations": {"readOnlyHint": true}},
                {"name": "fail", "description": "Fails", "inputSchema": {"type": "object"},
                 "annotations": {"readOnlyHint": true}},
                {"name": "odd", "description": "Answers no tool result",
                 "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}}
            ]}),
            Some(_) => return rpc_error(StatusCode::OK, &id, -32602, "bad cursor"),
        },
        "tools/call" => {
            let account = account.unwrap_or_default();
            match message["params"]["name"].as_str().unwrap_or_default() {
                "whoami" => json!({"content": [{"type": "text", "text": account}],
                                   "structuredContent": {"account": account}}),
                "close_issue" => json!({"content": [{"type": "text",
                    "text": format!("closed #{} as {account}", message["params"]["arguments"]["id"])}]}),
                "big" => json!({"content": [{"type": "text", "text": "x".repeat(200_000)}]}),
                "hang" => std::future::pending().await,
                "fail" => return rpc_error(StatusCode::OK, &id, -32602, "unknown project"),
                "odd" => json!({"content": "not a list of blocks"}),
                _ => return rpc_error(StatusCode::OK, &id, -32602, "unknown tool"),
            }
        }
        _ => return rpc_error(StatusCode::NOT_FOUND, &id, -32601, "Method not found"),
    };
    let response = json!({"jsonrpc": "2.0", "id": id, "result": result});
    if style.sse {
        let notice = json!({"jsonrpc": "2.0", "method": "notifications/message",
                            "params": {"level": "info", "data": "working"}});
        let foreign = json!({"jsonrpc": "2.0", "id": 999_999, "result": {}});
        let text = format!(
            ": keep-alive\n\nid: 1\ndata:\n\nevent: message\ndata: {notice}\n\ndata: {foreign}\n\nevent: message\ndata: {response}\n\n"
        );
        // The stream stays open after the response (a server may keep it).
        let first = Ok::<_, std::convert::Infallible>(Bytes::from(text));
        let open =
            futures::StreamExt::chain(futures::stream::iter([first]), futures::stream::pending());
        (
            [(header::CONTENT_TYPE, "text/event-stream")],
            axum::body::Body::from_stream(open),
        )
            .into_response()
    } else {
        axum::Json(response).into_response()
    }
}

/// A vault in a scratch directory holding these (sub, server, token,
/// account) grants; the configuration for the gateway.
async fn vault_with(dir: &tempfile::TempDir, grants: &[(&str, &str, &str, &str)]) -> VaultConfig {
    let config = VaultConfig::new(
        VaultKeys::parse_single("CORTEX_VAULT_KEY", KEY).unwrap(),
        VaultStorage::Sqlite {
            path: dir.path().join("vault.db"),
        },
    );
    let vault = Vault::open(&config).await.unwrap();
    for (sub, server, token, account) in grants {
        vault
            .put(
                sub,
                server,
                Grant::new(Secret::new((*token).into()), *account),
            )
            .await
            .unwrap();
    }
    config
}

/// A world whose gateway also federates `servers` (id, fake), with the
/// vault's grants, after `tune` changes the configuration.
async fn world(
    servers: &[(&str, &FakeServer)],
    vault: VaultConfig,
    tune: impl FnOnce(&mut GatewayConfig) + Send + 'static,
) -> World {
    let servers: Vec<McpServerConfig> = servers
        .iter()
        .map(|(id, fake)| {
            let mut s = McpServerConfig::new(*id, &fake.url);
            s.timeout_ms = 2_000;
            s
        })
        .collect();
    World::start_with(Options {
        configure: Some(Box::new(move |c: &mut GatewayConfig| {
            c.mcp_servers = servers;
            c.vault = Some(vault);
            tune(c);
        })),
        ..Options::default()
    })
    .await
}

/// A stateless JSON server that knows Alice's token, and a vault with
/// her grant.
async fn alice_only() -> (FakeServer, tempfile::TempDir, VaultConfig) {
    let style = Style {
        modern: true,
        sse: false,
        stateful: false,
        list_needs_token: false,
    };
    let fake = FakeServer::start(style, &[("tok-alice", "alice@tracker")]).await;
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with(&dir, &[("alice", "tracker", "tok-alice", "alice@tracker")]).await;
    (fake, dir, vault)
}

const READ: &str = "mcp:tracker:read";
const WRITE: &str = "mcp:tracker:write";

fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn each_user_calls_as_their_own_linked_account_and_never_with_the_gateway_token() {
    let fake = FakeServer::start(
        Style {
            modern: false,
            sse: false,
            stateful: true,
            list_needs_token: false,
        },
        &[("tok-alice", "alice@tracker"), ("tok-bob", "bob@tracker")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with(
        &dir,
        &[
            ("alice", "tracker", "tok-alice", "alice@tracker"),
            ("bob", "tracker", "tok-bob", "bob@tracker"),
        ],
    )
    .await;
    let w = world(&[("tracker", &fake)], vault, |_| {}).await;
    let alice_token = w.token("alice", &[READ]);
    let bob_token = w.token("bob", &[READ]);
    let mut alice = Client::modern(&w.url, &alice_token);
    let mut bob = Client::legacy(&w.url, &bob_token, "2025-11-25").await;
    let a = alice.call("tracker_whoami", json!({})).await;
    let b = bob.call("tracker_whoami", json!({})).await;
    assert_eq!(a["isError"], false, "{a}");
    assert_eq!(text(&a), "alice@tracker");
    assert_eq!(a["structuredContent"]["account"], "alice@tracker", "{a}");
    assert_eq!(text(&b), "bob@tracker", "{b}");
    let seen = fake.authorizations();
    assert!(seen.contains(&"Bearer tok-alice".to_string()), "{seen:?}");
    assert!(seen.contains(&"Bearer tok-bob".to_string()), "{seen:?}");
    for header in &seen {
        assert!(
            header.is_empty() || header == "Bearer tok-alice" || header == "Bearer tok-bob",
            "an unexpected credential reached the server: {header}"
        );
        assert!(!header.contains(&alice_token) && !header.contains(&bob_token));
    }
    // A session per (user, server): one initialize each, none for listing
    // (the list was asked without a token, in a session of its own).
    assert_eq!(fake.initializes(), 3);
}

#[tokio::test]
async fn tools_are_projected_and_filtered_by_read_and_write_scope() {
    let (fake, _dir, vault) = alice_only().await;
    let w = world(&[("tracker", &fake)], vault, |_| {}).await;
    let mut reader = Client::modern(&w.url, &w.token("alice", &[READ]));
    let discovered = reader.ok("server/discover", json!({})).await;
    let instructions = discovered["instructions"].as_str().unwrap_or_default();
    assert!(
        instructions.contains("Third-party MCP servers (tracker)"),
        "{instructions}"
    );
    let names = reader.tool_names().await;
    for name in [
        "tracker_whoami",
        "tracker_big",
        "tracker_hang",
        "tracker_fail",
    ] {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    assert!(
        !names.contains(&"tracker_close_issue".to_string()),
        "{names:?}"
    );
    let refused = reader.call("tracker_close_issue", json!({"id": 7})).await;
    assert_eq!(refused["isError"], true);
    assert!(
        text(&refused).contains("missing scope mcp:tracker:write"),
        "{refused}"
    );
    let mut writer = Client::modern(&w.url, &w.token("alice", &[READ, WRITE]));
    let tools = writer.ok("tools/list", json!({})).await;
    let close = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "tracker_close_issue")
        .expect("the writer sees close_issue")
        .clone();
    assert_eq!(close["inputSchema"]["properties"]["id"]["type"], "integer");
    assert_eq!(close["annotations"]["destructiveHint"], false);
    let whoami = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "tracker_whoami")
        .unwrap()
        .clone();
    assert_eq!(
        whoami["outputSchema"]["properties"]["account"]["type"],
        "string"
    );
    let closed = writer.call("tracker_close_issue", json!({"id": 7})).await;
    assert_eq!(text(&closed), "closed #7 as alice@tracker", "{closed}");
    // A JSON-RPC error of the server is a tool error saying so.
    let failed = writer.call("tracker_fail", json!({})).await;
    assert_eq!(failed["isError"], true);
    assert!(text(&failed).contains("unknown project"), "{failed}");
    assert!(text(&failed).contains("-32602"), "{failed}");
    // The 2026-07-28 era was learnt once; no initialize was ever sent.
    assert_eq!(fake.initializes(), 0);
    assert_eq!(fake.fake.discovers.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unlinked_user_gets_a_link_url_and_a_refused_token_asks_to_link_again() {
    let fake = FakeServer::start(
        Style {
            modern: true,
            sse: true,
            stateful: false,
            list_needs_token: false,
        },
        &[("tok-alice", "alice@tracker")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with(
        &dir,
        &[
            ("alice", "tracker", "tok-alice", "alice@tracker"),
            ("mallory", "tracker", "tok-revoked", "mallory@tracker"),
        ],
    )
    .await;
    let w = world(&[("tracker", &fake)], vault, |_| {}).await;
    let mut carol = Client::modern(&w.url, &w.token("carol", &[READ]));
    let r = carol.call("tracker_whoami", json!({})).await;
    assert_eq!(r["isError"], true);
    let link = format!("{}/link/tracker/start?ticket=", w.base());
    assert!(text(&r).contains(&link), "{r}");
    assert!(text(&r).contains("link your account"), "{r}");
    let mut mallory = Client::modern(&w.url, &w.token("mallory", &[READ]));
    let r = mallory.call("tracker_whoami", json!({})).await;
    assert_eq!(r["isError"], true);
    assert!(text(&r).contains("linked again"), "{r}");
    assert!(text(&r).contains(&link), "{r}");
    // SSE answers: the response is picked out of the stream.
    let mut alice = Client::modern(&w.url, &w.token("alice", &[READ]));
    let r = alice.call("tracker_whoami", json!({})).await;
    assert_eq!(text(&r), "alice@tracker", "{r}");
}

#[tokio::test]
async fn a_session_the_server_ended_is_made_again_and_the_table_is_bounded() {
    let fake = FakeServer::start(
        Style {
            modern: false,
            sse: true,
            stateful: true,
            list_needs_token: true,
        },
        &[
            ("tok-alice", "alice@tracker"),
            ("tok-bob", "bob@tracker"),
            ("tok-cat", "catalog@tracker"),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with(
        &dir,
        &[
            ("alice", "tracker", "tok-alice", "alice@tracker"),
            ("bob", "tracker", "tok-bob", "bob@tracker"),
            ("svc-catalog", "tracker", "tok-cat", "catalog@tracker"),
        ],
    )
    .await;
    let catalog_url = fake.url.clone();
    let w = world(&[], vault, move |c| {
        // Listed with the catalog account's token; two sessions at most.
        let mut s = McpServerConfig::new("tracker", catalog_url);
        s.catalog_sub = Some("svc-catalog".into());
        c.mcp_servers = vec![s];
        c.mcp_limits.max_sessions = 2;
    })
    .await;
    let mut alice = Client::modern(&w.url, &w.token("alice", &[READ]));
    let mut bob = Client::modern(&w.url, &w.token("bob", &[READ]));
    assert_eq!(
        text(&alice.call("tracker_whoami", json!({})).await),
        "alice@tracker"
    );
    assert!(
        fake.authorizations()
            .contains(&"Bearer tok-cat".to_string())
    );
    let after_alice = fake.initializes();
    // Alice again: her session is reused.
    assert_eq!(
        text(&alice.call("tracker_whoami", json!({})).await),
        "alice@tracker"
    );
    assert_eq!(fake.initializes(), after_alice);
    // The server ends every session: the next call initializes again once
    // and succeeds.
    fake.forget_sessions();
    assert_eq!(
        text(&alice.call("tracker_whoami", json!({})).await),
        "alice@tracker"
    );
    assert_eq!(fake.initializes(), after_alice + 1);
    // Bob's session joins the catalog account's and Alice's: with room for
    // two, the oldest (the catalog's, then Alice's) goes.
    assert_eq!(
        text(&bob.call("tracker_whoami", json!({})).await),
        "bob@tracker"
    );
    let before = fake.initializes();
    w.gateway.refresh_now().await;
    assert_eq!(
        text(&alice.call("tracker_whoami", json!({})).await),
        "alice@tracker"
    );
    assert_eq!(
        fake.initializes(),
        before + 2,
        "evicted sessions are made again: {} then {}",
        before,
        fake.initializes()
    );
}

#[tokio::test]
async fn too_large_and_unanswered_calls_are_tool_errors() {
    let (fake, _dir, vault) = alice_only().await;
    let url = fake.url.clone();
    let w = world(&[], vault, move |c| {
        let mut s = McpServerConfig::new("tracker", url);
        s.timeout_ms = 300;
        c.mcp_servers = vec![s];
        c.max_response_bytes = 64 * 1024;
    })
    .await;
    let mut alice = Client::modern(&w.url, &w.token("alice", &[READ]));
    let big = alice.call("tracker_big", json!({})).await;
    assert_eq!(big["isError"], true);
    assert!(text(&big).contains("more than 65536 bytes"), "{big}");
    let hang = alice.call("tracker_hang", json!({})).await;
    assert_eq!(hang["isError"], true);
    assert!(
        text(&hang).contains("did not answer tracker_hang within 300 ms"),
        "{hang}"
    );
    // A result that is not an MCP tool result is not passed on.
    let odd = alice.call("tracker_odd", json!({})).await;
    assert_eq!(odd["isError"], true);
    assert!(text(&odd).contains("not a valid MCP tool result"), "{odd}");
}

#[tokio::test]
async fn a_server_that_lists_only_with_a_token_says_to_name_a_catalog_account() {
    let style = Style {
        modern: true,
        sse: false,
        stateful: false,
        list_needs_token: true,
    };
    let fake = FakeServer::start(style, &[("tok-alice", "alice@tracker")]).await;
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with(&dir, &[("alice", "tracker", "tok-alice", "alice@tracker")]).await;
    let w = world(&[("tracker", &fake)], vault, |_| {}).await;
    let catalog = w.gateway.catalog();
    let (_, health) = catalog
        .health
        .iter()
        .find(|(id, _)| id == "tracker")
        .expect("the server has a health entry");
    match health {
        cortex_gateway::Health::Down(reason) => {
            assert!(reason.contains("CATALOG_SUB"), "{reason}");
        }
        up => panic!("listed without a token: {up:?}"),
    }
    assert!(catalog.tool("tracker_whoami").is_none());
}

#[tokio::test]
async fn a_redirect_is_never_followed() {
    // The server the redirect points to counts what reaches it.
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let catcher = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            StatusCode::OK
        }
    });
    let catcher_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let catcher_addr = catcher_listener.local_addr().unwrap();
    let catcher_task = tokio::spawn(async move {
        axum::serve(catcher_listener, catcher).await.unwrap();
    });
    let target = format!("http://{catcher_addr}/mcp");
    let mover = Router::new().fallback(move || {
        let target = target.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]) }
    });
    let mover_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mover_url = format!("http://{}/mcp", mover_listener.local_addr().unwrap());
    let mover_task = tokio::spawn(async move {
        axum::serve(mover_listener, mover).await.unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with(&dir, &[("alice", "tracker", "tok-alice", "alice@tracker")]).await;
    let w = world(&[], vault, move |c| {
        c.mcp_servers = vec![McpServerConfig::new("tracker", mover_url)];
    })
    .await;
    let mut alice = Client::modern(&w.url, &w.token("alice", &[READ]));
    let names = alice.tool_names().await;
    assert!(
        !names.iter().any(|n| n.starts_with("tracker_")),
        "{names:?}"
    );
    let catalog = w.gateway.catalog();
    assert!(
        catalog
            .health
            .iter()
            .any(|(id, h)| id == "tracker" && matches!(h, cortex_gateway::Health::Down(_))),
        "{:?}",
        catalog.health
    );
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    catcher_task.abort();
    mover_task.abort();
}

/// With traces on, a call to a 2026-07-28 server carries the upstream
/// span's context in the `traceparent` header and in `params._meta`; with
/// them off (every other test here), in neither.
#[tokio::test]
async fn trace_context_reaches_a_modern_server_in_headers_and_meta() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let traces = std::sync::Arc::new(
        cortex_gateway::telemetry::Tracing::from_lookup(
            // Exports go nowhere (nothing listens): only the context matters.
            |k| {
                (k == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    .then(|| "http://127.0.0.1:9/v1/traces".into())
            },
            tokio::runtime::Handle::current(),
        )
        .unwrap()
        .unwrap(),
    );
    let _on_this_thread =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(traces.layer()));
    let (fake, _dir, vault) = alice_only().await;
    // Connections served on this thread, where the subscriber is.
    let w = world(&[("tracker", &fake)], vault, |c| c.workers = Some(0)).await;
    let mut alice = Client::modern(&w.url, &w.token("alice", &[READ]));
    // Other tests' threads register the callsites with no subscriber
    // interested: the cache is rebuilt once this thread's is registered.
    tracing::callsite::rebuild_interest_cache();
    let a = alice.call("tracker_whoami", json!({})).await;
    assert_eq!(a["isError"], false, "{a}");
    let seen = fake.fake.traces.lock().unwrap().clone();
    let (header, meta) = seen.last().cloned().expect("a tools/call");
    let header = header.expect("a traceparent header");
    assert_eq!(Some(&header), meta.as_ref(), "the same context in _meta");
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!(parts.len(), 4, "{header}");
    assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("00", 32, 16));
    tokio::task::spawn_blocking(move || traces.shutdown())
        .await
        .unwrap();
}
