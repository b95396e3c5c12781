//! The resource server: broken tokens, challenges, metadata, baseline scope.

use cortex_backend::testing::BrokenToken;
use serde_json::{Value, json};

use crate::support::{Options, World};

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}})
}

async fn post(w: &World, token: Option<&str>, query: &str) -> reqwest::Response {
    let mut b = reqwest::Client::new()
        .post(format!("{}{query}", w.url))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize().to_string());
    if let Some(t) = token {
        b = b.bearer_auth(t);
    }
    b.send().await.unwrap()
}

#[tokio::test]
async fn every_broken_token_gets_401_with_a_challenge() {
    let w = World::start().await;
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp", w.base());
    for kind in BrokenToken::ALL {
        let token = w.issuer.broken(kind, &w.url, "ana", &["mcp:crm:read"]);
        let r = post(&w, Some(&token), "").await;
        assert_eq!(r.status(), 401, "{}", kind.name());
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert!(
            challenge.contains(&format!("resource_metadata=\"{metadata}\"")),
            "{challenge}"
        );
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{}: {challenge}",
            kind.name()
        );
        assert!(challenge.contains("scope=\""), "{challenge}");
    }
    // No token at all: a challenge without an error code.
    let r = post(&w, None, "").await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(!challenge.contains("invalid_token"));
    assert!(challenge.contains("mcp:crm:read"), "{challenge}");
    // A valid token in the query string is never read.
    let good = w.token("ana", &["mcp:crm:read"]);
    let r = post(&w, None, &format!("?access_token={good}")).await;
    assert_eq!(r.status(), 401);
    // GET and DELETE are protected too.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = reqwest::Client::new()
            .request(method, &w.url)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
    }
    // A valid token passes.
    assert_eq!(post(&w, Some(&good), "").await.status(), 200);
}

#[tokio::test]
async fn protected_resource_metadata_at_both_paths() {
    let w = World::start().await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let doc: Value = reqwest::get(format!("{}{path}", w.base()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["resource"], w.url.as_str());
        assert_eq!(doc["authorization_servers"], json!([w.issuer.issuer()]));
        let scopes: Vec<&str> = doc["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(scopes, ["mcp:crm:read", "mcp:crm:write", "mcp:docs:read"]);
    }
    let ready = reqwest::get(format!("{}/readyz", w.base())).await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn baseline_scope_missing_is_403_insufficient_scope() {
    let w = World::start_with(Options {
        required_scopes: vec!["mcp:gateway".into()],
        ..Options::default()
    })
    .await;
    let without = w.token("ana", &["mcp:crm:read"]);
    let r = post(&w, Some(&without), "").await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("mcp:gateway"), "{challenge}");
    assert!(
        challenge.contains("mcp:crm:read"),
        "keeps the existing scopes: {challenge}"
    );
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    let with = w.token("ana", &["mcp:crm:read", "mcp:gateway"]);
    assert_eq!(post(&w, Some(&with), "").await.status(), 200);
}

#[tokio::test]
async fn foreign_origin_is_403() {
    let w = World::start().await;
    let token = w.token("ana", &["mcp:crm:read"]);
    let r = reqwest::Client::new()
        .post(&w.url)
        .bearer_auth(&token)
        .header("origin", "https://evil.example.com")
        .header("content-type", "application/json")
        .body(initialize().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = reqwest::Client::new()
        .post(&w.url)
        .bearer_auth(&token)
        .header("origin", w.base())
        .header("content-type", "application/json")
        .body(initialize().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
