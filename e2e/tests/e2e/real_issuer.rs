//! The gateway against a real authorization server: oidc-provider
//! (`oauth/issuer.mjs`) issuing its own default RFC 9068 access tokens
//! (`typ: at+jwt`, `aud` = the RFC 8707 resource, no `nbf`), the gateway
//! configured with `OAUTH_ISSUER` alone, in front of Meridian's `crm` and
//! `docs` apps. Tokens come from client credentials, from the authorization
//! code grant with PKCE (scripted), and from the official TypeScript SDK's
//! own OAuth client, which discovers and registers by itself.
//!
//! One issuer and one gateway serve every test of this module (started on
//! first use, on a runtime of their own; the issuer exits with the test
//! process because its stdin closes).

use std::{sync::OnceLock, time::Duration};

use base64::Engine as _;
use e2e::real_issuer::{
    GATEWAY_SCOPES, OTHER_RESOURCE, PUBLIC_CLIENT_ID, PUBLIC_REDIRECT_URI, RealIssuerStack,
    SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET,
};
use meridian::firm::PROJECT_MANAGER;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::{
    meridian::{app_tools_for_scopes, check_app_tools},
    rust_sdk::{self, Client},
    support::{code_pkce, e2e_dir, http, node, run},
};

/// What the tests need of the shared stack.
#[derive(Debug)]
struct World {
    url: String,
    issuer: String,
}

static WORLD: OnceLock<World> = OnceLock::new();

/// The shared issuer and gateway, started on first use.
fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let (node, script) = (node(), e2e_dir().join("oauth/issuer.mjs"));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the shared stack");
            runtime.block_on(async move {
                let stack = match RealIssuerStack::start(&node, &script).await {
                    Ok(stack) => stack,
                    Err(e) => {
                        let _ = tx.send(Err(format!("{e:#}")));
                        return;
                    }
                };
                let _ = tx.send(Ok(World {
                    url: stack.url().to_owned(),
                    issuer: stack.issuer().to_owned(),
                }));
                // The stack serves until the test process ends.
                std::future::pending::<()>().await
            });
        });
        rx.recv()
            .expect("the stack's thread answers")
            .unwrap_or_else(|e| panic!("the real-issuer stack did not start: {e}"))
    })
}

/// `application/x-www-form-urlencoded`.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The issuer's metadata (oidc-provider serves OpenID discovery).
async fn metadata(issuer: &str) -> Value {
    let (status, _, body) = http(
        "GET",
        &format!("{issuer}/.well-known/openid-configuration"),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "issuer metadata: {body}");
    serde_json::from_str(&body).expect("metadata JSON")
}

/// A client-credentials token for `resource` with `scope`.
async fn client_credentials(resource: &str, scope: &str) -> String {
    let world = world();
    let token_endpoint = metadata(&world.issuer).await["token_endpoint"]
        .as_str()
        .expect("token_endpoint")
        .to_owned();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{SERVICE_CLIENT_ID}:{SERVICE_CLIENT_SECRET}"));
    let (status, _, body) = http(
        "POST",
        &token_endpoint,
        &[
            ("authorization", &format!("Basic {basic}")),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("resource", resource),
        ])),
    )
    .await;
    assert_eq!(
        status, 200,
        "client credentials at {token_endpoint}: {body}"
    );
    let response: Value = serde_json::from_str(&body).expect("token JSON");
    assert_eq!(response["scope"], scope, "granted scope: {body}");
    response["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// An authorization-code + PKCE token, the user's side scripted
/// (`oauth/code_pkce.mjs`).
async fn authorization_code(login: &str, scope: &str) -> String {
    let world = world();
    let request = json!({
        "issuer": world.issuer,
        "client_id": PUBLIC_CLIENT_ID,
        "redirect_uri": PUBLIC_REDIRECT_URI,
        "resource": world.url,
        "scope": scope,
        "login": login,
    });
    let response = code_pkce(&request).await;
    assert_eq!(response["scope"], scope, "granted scope");
    response["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The JOSE header and the claims of a JWT (not verified: only to show
/// what the issuer's defaults produced).
fn decode(token: &str) -> (Value, Value) {
    let part = |i: usize| -> Value {
        let text = token.split('.').nth(i).expect("a JWT has three parts");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (part(0), part(1))
}

/// The token is oidc-provider's default RFC 9068 format for `resource`.
fn check_default_format(token: &str, resource: &str, sub: &str) {
    let (header, claims) = decode(token);
    assert_eq!(header["typ"], "at+jwt", "header {header}");
    assert_eq!(header["alg"], "RS256", "header {header}");
    assert_eq!(claims["aud"], resource, "claims {claims}");
    assert_eq!(claims["sub"], sub, "claims {claims}");
    assert!(
        claims.get("nbf").is_none(),
        "oidc-provider's default tokens carry no nbf: {claims}"
    );
}

async fn connect(token: &str, modern: bool) -> Client {
    rust_sdk::connect(&world().url, token, modern).await
}

/// Connects with `token` (2026-07-28 when `modern`, else 2025-11-25) and
/// checks that it lists exactly the tools of the apps `scope` names.
async fn connect_with_scope(token: &str, modern: bool, who: &str, scope: &str) -> Client {
    let client = connect(token, modern).await;
    check_app_tools(
        who,
        &app_tools_for_scopes(scope.split(' ')),
        &list_tools(&client).await,
    );
    client
}

async fn list_tools(client: &Client) -> Value {
    let tools = client.list_all_tools().await.expect("tools/list");
    json!({ "tools": tools })
}

async fn call(client: &Client, name: &str, arguments: Value) -> Value {
    let params = CallToolRequestParams::new(name.to_owned())
        .with_arguments(arguments.as_object().cloned().unwrap_or_default());
    let result = client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("tools/call {name}: {e}"));
    serde_json::to_value(result).expect("a serializable result")
}

/// `docs_list_projects` as the project manager: the docs app decides from
/// the token's `sub` alone which projects are theirs.
fn check_manager_projects(who: &str, result: &Value) {
    assert_eq!(result["isError"], false, "{who}: {result}");
    let ids: Vec<&str> = result["structuredContent"]["projects"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no projects in {result}"))
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, ["atlas", "beacon"], "{who}: {result}");
}

/// The `whoami` builtin: each in-scope app reports the `sub` it validated.
async fn check_apps_see(client: &Client, who: &str, sub: &str, apps: &[&str]) {
    let result = call(client, "whoami", json!({})).await;
    let backends = &result["structuredContent"]["backends"];
    for app in apps {
        assert_eq!(
            backends[app]["sub"], sub,
            "{who}: the {app} app's own view of the caller: {result}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_token_reaches_exactly_its_scopes() {
    let url = &world().url;
    let scope = "mcp:crm:read mcp:docs:read";
    let token = client_credentials(url, scope).await;
    check_default_format(&token, url, SERVICE_CLIENT_ID);

    let who = "client credentials (2026-07-28)";
    let client = connect_with_scope(&token, true, who, scope).await;
    // No sales-team claim: the CRM shows every account.
    let accounts = call(&client, "crm_search_accounts", json!({"query": ""})).await;
    assert_eq!(accounts["isError"], false, "{who}: {accounts}");
    assert_eq!(
        accounts["structuredContent"]["accounts"]
            .as_array()
            .map(Vec::len),
        Some(10),
        "{who}: {accounts}"
    );
    // A write tool the token holds no scope for is not reachable.
    let write = client
        .call_tool(
            CallToolRequestParams::new("crm_log_call").with_arguments(
                json!({"deal_id": "D-1001", "summary": "must not be logged"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await;
    let refused = match &write {
        Err(_) => true,
        Ok(result) => result.is_error == Some(true),
    };
    assert!(refused, "{who}: crm_log_call was not refused: {write:?}");
    let _ = client.cancel().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_pkce_token_reaches_exactly_its_scopes() {
    let url = &world().url;
    let scope = "mcp:docs:read mcp:crm:read";
    let token = authorization_code(PROJECT_MANAGER, scope).await;
    check_default_format(&token, url, PROJECT_MANAGER);

    let who = "authorization code + PKCE (2025-11-25)";
    let client = connect_with_scope(&token, false, who, scope).await;
    check_manager_projects(who, &call(&client, "docs_list_projects", json!({})).await);
    let _ = client.cancel().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_receive_the_token_subject() {
    let url = &world().url;
    let service = client_credentials(url, "mcp:crm:read mcp:docs:read").await;
    let client = connect(&service, true).await;
    check_apps_see(
        &client,
        "client credentials",
        SERVICE_CLIENT_ID,
        &["crm", "docs"],
    )
    .await;
    let _ = client.cancel().await;

    let user = authorization_code(PROJECT_MANAGER, "mcp:docs:read").await;
    let client = connect(&user, false).await;
    check_apps_see(&client, "authorization code", PROJECT_MANAGER, &["docs"]).await;
    let _ = client.cancel().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_for_another_resource_is_refused() {
    let url = &world().url;
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "cortex-e2e", "version": "0.1.0"}},
    })
    .to_string();
    let post = |token: String| {
        let body = initialize.clone();
        async move {
            http(
                "POST",
                url,
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("content-type", "application/json"),
                    ("accept", "application/json, text/event-stream"),
                ],
                Some(body),
            )
            .await
        }
    };

    // The same issuer, client and scopes; only the resource differs.
    let other = client_credentials(OTHER_RESOURCE, "mcp:crm:read").await;
    check_default_format(&other, OTHER_RESOURCE, SERVICE_CLIENT_ID);
    let (status, headers, body) = post(other).await;
    assert_eq!(
        status, 401,
        "a token for {OTHER_RESOURCE} was accepted: {body}"
    );
    let challenge = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("resource_metadata="),
        "401 without an RFC 9728 challenge: {challenge:?}"
    );

    let own = client_credentials(url, "mcp:crm:read").await;
    let (status, _, body) = post(own).await;
    assert_eq!(status, 200, "the gateway's own token was refused: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_oauth_client_authorizes_itself() {
    let world = world();
    let plan =
        json!({"login": PROJECT_MANAGER, "call": {"name": "docs_list_projects", "arguments": {}}});
    let mut command = Command::new(node());
    command
        .arg(e2e_dir().join("clients/ts_oauth_generic.mjs"))
        .arg(plan.to_string())
        .env("MCP_URL", &world.url)
        .current_dir(e2e_dir());
    let finished = run(command, Duration::from_secs(120)).await;
    finished.assert_success("ts_oauth_generic.mjs");
    let output = finished.json("ts_oauth_generic.mjs");
    let who = "TypeScript SDK OAuth client";

    // The steps the SDK took, in order: the 401, RFC 9728 metadata, the
    // authorization server's metadata, registration, the token request
    // (the authorization itself happened in the scripted browser), then MCP
    // with the token.
    let trace: Vec<(String, String, u64)> = output["trace"]
        .as_array()
        .expect("trace")
        .iter()
        .map(|t| {
            (
                t["method"].as_str().unwrap_or_default().to_owned(),
                t["url"].as_str().unwrap_or_default().to_owned(),
                t["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let position = |what: &str, hit: &dyn Fn(&(String, String, u64)) -> bool| {
        trace
            .iter()
            .position(hit)
            .unwrap_or_else(|| panic!("{who}: no {what} in {trace:#?}"))
    };
    let (mcp, issuer) = (world.url.as_str(), world.issuer.as_str());
    let challenged = position("401 from the gateway", &|(m, u, s)| {
        m == "POST" && u == mcp && *s == 401
    });
    let protected = position("protected-resource metadata", &|(m, u, s)| {
        m == "GET" && u.contains("/.well-known/oauth-protected-resource") && *s == 200
    });
    let server_metadata = position("authorization-server metadata", &|(m, u, s)| {
        m == "GET"
            && u.starts_with(issuer)
            && (u.contains("/.well-known/oauth-authorization-server")
                || u.contains("/.well-known/openid-configuration"))
            && *s == 200
    });
    let registered = position("dynamic client registration", &|(m, u, s)| {
        m == "POST" && u.starts_with(issuer) && u.ends_with("/reg") && *s == 201
    });
    let token = position("token request", &|(m, u, s)| {
        m == "POST" && u.starts_with(issuer) && u.ends_with("/token") && *s == 200
    });
    let authorized = trace
        .iter()
        .rposition(|(m, u, s)| m == "POST" && u == mcp && *s == 200)
        .unwrap_or_else(|| panic!("{who}: no authorized MCP request in {trace:#?}"));
    assert!(
        challenged < protected
            && protected < server_metadata
            && server_metadata < registered
            && registered < token
            && token < authorized,
        "{who}: steps out of order: {trace:#?}"
    );

    let client_id = output["clientId"].as_str().unwrap_or_default();
    assert!(
        !client_id.is_empty() && client_id != PUBLIC_CLIENT_ID && client_id != SERVICE_CLIENT_ID,
        "{who}: registration gave {client_id:?}"
    );
    // The SDK asks for the scopes the gateway advertises; the consent
    // grants what the issuer knows for the resource.
    let granted = output["grantedScope"].as_str().unwrap_or_default();
    let mut granted_scopes: Vec<&str> = granted.split(' ').filter(|s| !s.is_empty()).collect();
    granted_scopes.sort_unstable();
    assert!(
        !granted_scopes.is_empty()
            && granted_scopes
                .iter()
                .all(|s| GATEWAY_SCOPES.split(' ').any(|known| known == *s)),
        "{who}: granted {granted:?}"
    );
    let tools = json!({"tools": output["tools"].as_array().expect("tools").iter()
        .map(|name| json!({"name": name})).collect::<Vec<_>>()});
    check_app_tools(
        who,
        &app_tools_for_scopes(granted_scopes.iter().copied()),
        &tools,
    );
    check_manager_projects(who, &output["call"]);
}
