//! The third-party parts on their own, before any gateway: the tracker's
//! MCP server (the official TypeScript SDK's `McpServer` in its
//! resource-server mode) and its authorization server (a second
//! oidc-provider), stateful and stateless. Without a token: 401 naming its
//! RFC 9728 metadata, which names its authorization server. With a token
//! from a scripted code + PKCE sign-in: `whoami` is that user, the tools
//! carry their annotations and schemas, and a revoked grant is refused at
//! once (the server introspects every token).

use std::sync::OnceLock;

use e2e::tracker::{SCOPES, TEST_CLIENT_ID, TEST_REDIRECT_URI, Tracker};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use crate::{
    rust_sdk::{self, call_tool, text_json},
    support::{code_pkce, http, node},
};

/// One stateful and one stateless tracker, started on first use; they
/// exit with the test process (their stdin closes).
pub(crate) fn tracker(stateless: bool) -> &'static Tracker {
    static STATEFUL: OnceLock<Tracker> = OnceLock::new();
    static STATELESS: OnceLock<Tracker> = OnceLock::new();
    let cell = if stateless { &STATELESS } else { &STATEFUL };
    cell.get_or_init(|| Tracker::start(&node(), stateless).unwrap_or_else(|e| panic!("{e:#}")))
}

/// A token response from the tracker's authorization server for `login`,
/// by code + PKCE through its sign-in and consent forms.
async fn sign_in(tracker: &Tracker, login: &str) -> Value {
    let request = json!({
        "issuer": tracker.issuer(),
        "client_id": TEST_CLIENT_ID,
        "redirect_uri": TEST_REDIRECT_URI,
        "resource": tracker.url(),
        "scope": SCOPES,
        "login": login,
    });
    let response = code_pkce(&request).await;
    assert_eq!(response["scope"], SCOPES, "granted scope: {response}");
    assert!(
        response["refresh_token"].is_string(),
        "the tracker issues refresh tokens: {response}"
    );
    response
}

fn access_token(response: &Value) -> &str {
    response["access_token"].as_str().expect("access_token")
}

async fn unauthenticated_is_refused_with_metadata(stateless: bool) {
    let tracker = tracker(stateless);
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "0"}}});
    let (status, headers, body) = http(
        "POST",
        tracker.url(),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        Some(initialize.to_string()),
    )
    .await;
    assert_eq!(status, 401, "no token: {body}");
    let challenge = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no WWW-Authenticate on the 401: {headers:?}"));
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&format!("resource_metadata=\"{}\"", tracker.metadata_url())),
        "challenge {challenge:?}"
    );
    let (status, _, body) = http("GET", &tracker.metadata_url(), &[], None).await;
    assert_eq!(status, 200, "metadata: {body}");
    let metadata: Value = serde_json::from_str(&body).expect("metadata JSON");
    assert_eq!(metadata["resource"], tracker.url(), "{metadata}");
    assert_eq!(metadata["authorization_servers"], json!([tracker.issuer()]));
    let (status, _, body) = http(
        "GET",
        &format!("{}/.well-known/openid-configuration", tracker.issuer()),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "authorization server metadata: {body}");
    let metadata: Value = serde_json::from_str(&body).expect("metadata JSON");
    for endpoint in [
        "introspection_endpoint",
        "revocation_endpoint",
        "registration_endpoint",
    ] {
        assert!(metadata[endpoint].is_string(), "{endpoint}: {metadata}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_tracker_refuses_no_token_naming_its_metadata() {
    unauthenticated_is_refused_with_metadata(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_tracker_refuses_no_token_naming_its_metadata() {
    unauthenticated_is_refused_with_metadata(true).await;
}

async fn signed_in_users_see_themselves(stateless: bool) {
    let tracker = tracker(stateless);
    // Logins of their own: the revocation below must not touch other tests.
    let (alice, bob) = if stateless {
        ("alice-t-smoke-stateless", "bob-t-smoke-stateless")
    } else {
        ("alice-t-smoke-stateful", "bob-t-smoke-stateful")
    };
    let alice_token = sign_in(tracker, alice).await;
    let bob_token = sign_in(tracker, bob).await;
    let alice_client = rust_sdk::connect(tracker.url(), access_token(&alice_token), false).await;
    let bob_client = rust_sdk::connect(tracker.url(), access_token(&bob_token), false).await;

    let tools = alice_client.list_all_tools().await.expect("tools/list");
    let tools = serde_json::to_value(tools).expect("serializable");
    let tool = |name: &str| {
        tools
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == name))
            .unwrap_or_else(|| panic!("no {name} in {tools}"))
            .clone()
    };
    assert_eq!(tool("list_issues")["annotations"]["readOnlyHint"], true);
    assert_eq!(tool("create_issue")["annotations"]["readOnlyHint"], false);
    assert!(tool("issue_counts")["outputSchema"]["properties"]["open"].is_object());

    let whoami = text_json(&call_tool(&alice_client, "whoami", json!({})).await);
    assert_eq!(whoami["sub"], alice, "{whoami}");
    assert_eq!(whoami["client_id"], TEST_CLIENT_ID, "{whoami}");
    let whoami = text_json(&call_tool(&bob_client, "whoami", json!({})).await);
    assert_eq!(whoami["sub"], bob, "{whoami}");

    let created = text_json(
        &call_tool(
            &alice_client,
            "create_issue",
            json!({"title": "Flaky login"}),
        )
        .await,
    );
    assert_eq!(created["state"], "open", "{created}");
    let counts = call_tool(&alice_client, "issue_counts", json!({})).await;
    assert_eq!(
        counts["structuredContent"],
        json!({"owner": alice, "open": 1, "closed": 0}),
        "{counts}"
    );
    let counts = call_tool(&bob_client, "issue_counts", json!({})).await;
    assert_eq!(
        counts["structuredContent"]["open"], 0,
        "bob's own issues: {counts}"
    );

    // Revoked at the authorization server: refused at once, by
    // introspection; the other user is untouched.
    assert_eq!(tracker.revoke_account(alice).await.expect("revoke"), 1);
    let refused = alice_client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await;
    assert!(refused.is_err(), "a revoked token still works: {refused:?}");
    let (status, headers, _) = http(
        "POST",
        tracker.url(),
        &[
            (
                "authorization",
                &format!("Bearer {}", access_token(&alice_token)),
            ),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        Some(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string()),
    )
    .await;
    assert_eq!(status, 401, "revoked token");
    assert!(
        format!("{headers:?}").contains("invalid_token"),
        "{headers:?}"
    );
    let whoami = text_json(&call_tool(&bob_client, "whoami", json!({})).await);
    assert_eq!(whoami["sub"], bob, "{whoami}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_tracker_whoami_is_the_signed_in_user() {
    signed_in_users_see_themselves(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_tracker_whoami_is_the_signed_in_user() {
    signed_in_users_see_themselves(true).await;
}
