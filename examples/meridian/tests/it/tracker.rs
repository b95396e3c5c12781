//! The tracker on its own: an OAuth resource server (RFC 9728) that serves
//! only tokens its own authorization server issued for it.

use std::time::Duration;

use axum::http::header;
use meridian::{
    Running,
    apps::serve::ShutdownTrigger,
    firm::{self, Persona},
    issuer::{AuthServer, Settings},
    mcp,
    tracker::Tracker,
};
use serde_json::{Value, json};

use crate::{
    oauth::Flow,
    support::{call_tool, start, text, tool_names},
};

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
    let whoami = json!({"name": "whoami", "arguments": {}});
    let response = post(url, token, "tools/call", whoami).await;
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
    // The right audience, from another issuer (Meridian's own): refused.
    // The two servers sign with different keys.
    let firm_auth = AuthServer::start(url, Settings::default()).await.unwrap();
    let (ours, theirs) = (
        get_json(&auth.jwks_url()).await,
        get_json(&firm_auth.jwks_url()).await,
    );
    assert_ne!(ours["keys"][0]["n"], theirs["keys"][0]["n"]);
    let foreign = token(&firm_auth, url, firm::SALES_REP, &scopes);
    assert_refused(url, Some(&foreign), tracker.metadata_url()).await;
    assert_refused(url, Some("not-a-token"), tracker.metadata_url()).await;

    // Discovery needs no token (so the gateway lists the tools before
    // anyone links); a tool call does.
    let response = post(url, None, "tools/list", json!({})).await;
    assert_eq!(response.status(), 200);
    let tools = response.json::<Value>().await.unwrap()["result"].clone();
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
    // The right token: the caller's own account.
    let lena = token(auth, url, firm::SALES_REP, &scopes);
    let me = call(url, &lena, "whoami", json!({})).await;
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

/// The link URL in a tool error's text.
fn link_url(result: &Value) -> String {
    assert_eq!(result["isError"], json!(true), "{result}");
    let text = text(result);
    let start = text
        .find("http://")
        .unwrap_or_else(|| panic!("no link URL in {text:?}"));
    let url: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert!(url.contains("/link/tracker/start?ticket="), "{url}");
    url
}

/// What a person's browser does with a link URL: the gateway shows whose
/// Cortex account it links to, "Continue" sends the browser to the
/// tracker's authorization server, the person signs in and allows, and the
/// gateway's callback shows the linked account. Returns that page.
async fn link(running: &Running, url: &str, person: &str) -> String {
    let browser = http();
    let shown = browser.get(url).send().await.expect("the gateway answers");
    assert_eq!(shown.status(), 200);
    let confirm = shown.text().await.unwrap();
    assert!(confirm.contains("to the Cortex user <b>"), "{confirm}");
    let ticket = url.split_once("ticket=").expect("a ticket").1;
    assert!(
        confirm.contains(&format!("name=\"ticket\" value=\"{ticket}\"")),
        "{confirm}"
    );
    let form_action = url.split('?').next().unwrap();
    let origin = url::Url::parse(url).unwrap().origin().ascii_serialization();
    let started = browser
        .post(form_action)
        .header(header::ORIGIN, origin)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("ticket={ticket}"))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(started.status(), 303);
    let cookie = started.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let to_provider = started.headers()[header::LOCATION].to_str().unwrap();
    let issuer = running.tracker().auth_server().issuer();
    assert!(to_provider.starts_with(issuer), "{to_provider}");
    let sign_in = browser.get(to_provider).send().await.unwrap();
    assert_eq!(sign_in.status(), 200);
    let page = sign_in.text().await.unwrap();
    assert!(page.contains("Sign in to Tracker"), "{page}");
    let callback = Flow::new(issuer).sign_in(&page, person).await;
    assert!(
        callback.starts_with(running.url.trim_end_matches("/mcp")),
        "{callback}"
    );
    let linked = browser
        .get(&callback)
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(linked.status(), 200);
    linked.text().await.unwrap()
}

#[tokio::test]
async fn personas_link_their_own_tracker_accounts_through_the_gateway() {
    let running = start().await;
    let lena = running.tokens.get(Persona::SalesRep);
    let claire = running.tokens.get(Persona::Cfo);
    let tools = tool_names(&running, lena).await;
    for tool in [
        "tracker_whoami",
        "tracker_list_issues",
        "tracker_create_issue",
    ] {
        assert!(tools.iter().any(|t| t == tool), "{tool} in {tools:?}");
    }

    // Not linked yet: the tool error carries a link URL.
    let first = call_tool(&running, lena, "tracker_whoami", json!({})).await;
    let url = link_url(&first);
    assert!(!url.contains(lena), "never the gateway token in a URL");
    let linked = link(&running, &url, firm::SALES_REP).await;
    assert!(
        linked.contains("lena.fischer@meridian.example"),
        "the page names the linked account: {linked}"
    );
    let me = call_tool(&running, lena, "tracker_whoami", json!({})).await;
    assert_eq!(me["isError"], json!(false), "{me}");
    assert_eq!(me["structuredContent"]["sub"], firm::SALES_REP, "{me}");
    assert_eq!(me["structuredContent"]["name"], "Lena Fischer", "{me}");

    // A second persona is still unlinked, and links their own account.
    let other = call_tool(&running, claire, "tracker_list_issues", json!({})).await;
    let claire_url = link_url(&other);
    assert_ne!(claire_url, url);
    link(&running, &claire_url, firm::CFO).await;
    let hers = call_tool(&running, claire, "tracker_whoami", json!({})).await;
    assert_eq!(hers["structuredContent"]["sub"], firm::CFO, "{hers}");
    assert_eq!(hers["structuredContent"]["name"], "Claire Dubois", "{hers}");
    let issues = call_tool(&running, claire, "tracker_list_issues", json!({})).await;
    let lenas = call_tool(&running, lena, "tracker_list_issues", json!({})).await;
    assert_ne!(
        issues["structuredContent"]["account"], lenas["structuredContent"]["account"],
        "{issues} {lenas}"
    );
    assert_eq!(
        call_tool(&running, lena, "tracker_whoami", json!({})).await["structuredContent"]["sub"],
        firm::SALES_REP
    );

    // The `accounts` builtin shows the link.
    let listed = call_tool(&running, lena, "accounts", json!({"action": "list"})).await;
    assert_eq!(
        structured(&listed)["servers"],
        json!([{"server": "tracker", "linked": true, "account": "lena.fischer@meridian.example"}]),
        "{listed}"
    );

    // Revoked on the tracker's side: the next call asks to link again.
    let tracker_auth = running.tracker().auth_server();
    assert_eq!(tracker_auth.revoke_person(firm::CFO), 1);
    let relink = call_tool(&running, claire, "tracker_whoami", json!({})).await;
    link_url(&relink);
    assert!(text(&relink).contains("linked again"), "{relink}");

    // Unlinking deletes the grant and revokes it at the tracker (RFC 7009).
    let unlink = json!({"action": "unlink", "server": "tracker"});
    let unlinked = call_tool(&running, lena, "accounts", unlink).await;
    assert_eq!(structured(&unlinked)["unlinked"], json!(true), "{unlinked}");
    assert_eq!(
        tracker_auth.revoke_person(firm::SALES_REP),
        0,
        "the unlink already ended the grant at the tracker"
    );
    let again = call_tool(&running, lena, "tracker_whoami", json!({})).await;
    link_url(&again);
    running.shutdown().await;
}

/// A tool result's structured content (or its text, parsed).
fn structured(result: &Value) -> Value {
    match result.get("structuredContent") {
        Some(v) => v.clone(),
        None => serde_json::from_str(text(result)).unwrap_or(Value::Null),
    }
}
