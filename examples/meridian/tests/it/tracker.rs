//! The tracker on its own: an OAuth resource server (RFC 9728) that serves
//! only tokens its own authorization server issued for it.

use std::time::Duration;

use meridian::{
    apps::serve::ShutdownTrigger,
    firm,
    issuer::{AuthServer, Settings},
    mcp,
    tracker::Tracker,
};
use serde_json::{Value, json};

pub(crate) async fn start_tracker() -> (Tracker, ShutdownTrigger) {
    let (trigger, shutdown) = ShutdownTrigger::new();
    let tracker = Tracker::start(Settings::default(), shutdown)
        .await
        .expect("the tracker starts");
    (tracker, trigger)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// One stateless MCP request to the tracker, with or without a token.
async fn post(url: &str, token: Option<&str>, method: &str, params: Value) -> reqwest::Response {
    let name = params["name"].as_str().map(str::to_string);
    let mut request = http().post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (k, v) in mcp::headers(method, name.as_deref()) {
        request = request.header(k, v);
    }
    request
        .body(mcp::request(3, method, params).to_string())
        .send()
        .await
        .expect("the tracker answers")
}

/// A served request's JSON-RPC result.
async fn result(url: &str, token: &str, method: &str, params: Value) -> Value {
    let response = post(url, Some(token), method, params).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body.get("result")
        .cloned()
        .unwrap_or_else(|| panic!("{method} answered {body}"))
}

/// Calls a tracker tool; returns the `tools/call` result.
async fn call(url: &str, token: &str, tool: &str, arguments: Value) -> Value {
    result(
        url,
        token,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    )
    .await
}

async fn get_json(url: &str) -> Value {
    let response = http().get(url).send().await.expect("an answer");
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.expect("JSON")
}

/// A token of `auth` for `audience`, as `person`, with `scopes`.
fn token(auth: &AuthServer, audience: &str, person: &str, scopes: &[&str]) -> String {
    auth.minter()
        .token(audience)
        .scopes(scopes.iter().copied())
        .claim("sub", json!(person))
        .ttl(Duration::from_secs(300))
        .mint()
}

async fn assert_refused(url: &str, token: Option<&str>, metadata_url: &str) -> String {
    let response = post(url, token, "tools/list", json!({})).await;
    assert_eq!(response.status(), 401, "{token:?}");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .expect("a WWW-Authenticate challenge")
        .to_string();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{challenge}"
    );
    challenge
}

#[tokio::test]
async fn the_tracker_serves_only_tokens_of_its_own_authorization_server() {
    let (tracker, _trigger) = start_tracker().await;
    let url = tracker.url();
    let auth = tracker.auth_server();

    // RFC 9728: the challenge leads to the metadata, which names the
    // tracker's own authorization server, whose RFC 8414 metadata has the
    // tracker's scopes.
    let challenge = assert_refused(url, None, tracker.metadata_url()).await;
    assert!(!challenge.contains("invalid_token"), "{challenge}");
    let metadata = get_json(tracker.metadata_url()).await;
    assert_eq!(metadata["resource"], url);
    assert_eq!(metadata["authorization_servers"], json!([auth.issuer()]));
    let as_metadata = get_json(&format!(
        "{}/.well-known/oauth-authorization-server",
        auth.issuer()
    ))
    .await;
    assert_eq!(
        as_metadata["scopes_supported"],
        json!(["issues:read", "issues:write"])
    );
    assert_eq!(
        as_metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );

    let scopes = ["issues:read", "issues:write"];
    // Another audience, from the right issuer.
    let elsewhere = token(auth, "http://127.0.0.1:9/mcp", firm::SALES_REP, &scopes);
    let challenge = assert_refused(url, Some(&elsewhere), tracker.metadata_url()).await;
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // The right audience, from another issuer (Meridian's own, which signs
    // with the same key in this process): only the tracker's issuer counts.
    let firm_auth = AuthServer::start(url, Settings::default()).await.unwrap();
    let foreign = token(&firm_auth, url, firm::SALES_REP, &scopes);
    assert_refused(url, Some(&foreign), tracker.metadata_url()).await;
    assert_refused(url, Some("not-a-token"), tracker.metadata_url()).await;

    // The right token: the tools, and the caller's own account.
    let lena = token(auth, url, firm::SALES_REP, &scopes);
    let tools = result(url, &lena, "tools/list", json!({})).await;
    let mut names: Vec<(String, Value)> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["annotations"]["readOnlyHint"].clone(),
            )
        })
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        names,
        [
            ("create_issue".to_string(), json!(false)),
            ("list_issues".to_string(), json!(true)),
            ("whoami".to_string(), json!(true)),
        ]
    );
    let me = result(
        url,
        &lena,
        "tools/call",
        json!({"name": "whoami", "arguments": {}}),
    )
    .await;
    assert_eq!(me["structuredContent"]["sub"], firm::SALES_REP, "{me}");
    assert_eq!(me["structuredContent"]["name"], "Lena Fischer", "{me}");
    let issues = call(url, &lena, "list_issues", json!({})).await;
    assert_eq!(
        issues["structuredContent"]["issues"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "{issues}"
    );
    let title = json!({"title": "Renew the CRM licence"});
    let created = call(url, &lena, "create_issue", title).await;
    assert_eq!(created["isError"], json!(false), "{created}");
    assert_eq!(created["structuredContent"]["status"], "open");

    // A read-only token cannot file issues.
    let reader = token(auth, url, firm::CFO, &["issues:read"]);
    let refused = call(url, &reader, "create_issue", json!({"title": "x"})).await;
    assert_eq!(refused["isError"], json!(true), "{refused}");
    assert!(
        refused["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("issues:write"),
        "{refused}"
    );

    // Revoked at the tracker's authorization server: refused at once.
    auth.revoke_person(firm::SALES_REP);
    assert_refused(url, Some(&lena), tracker.metadata_url()).await;
}
