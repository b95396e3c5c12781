//! The dispatcher against every status path of contract.md §6, every broken
//! token, the technical-token boundary, scopes and header spoofing.

use cortex_backend::{Request, RequestBody, testing::BrokenToken, testing::TestIssuer};
use serde_json::json;

use crate::support::*;

async fn setup() -> (TestIssuer, cortex_backend::Backend<Notes>) {
    let issuer = TestIssuer::start().await.expect("issuer");
    let backend = backend(&issuer);
    (issuer, backend)
}

#[tokio::test]
async fn status_200_tool_result_is_the_plain_json_value() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    let r = b
        .handle(call("echo", json!({"text": "ab", "count": 2}), &t))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body(), json!({"text": "abab", "count": 2}));
}

#[tokio::test]
async fn status_400_wrong_argument_type_names_the_path() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    let r = b
        .handle(call("echo", json!({"text": "a", "count": "two"}), &t))
        .await;
    let body = assert_error(&r, 400);
    assert_eq!(body["code"], "invalid_params");
    assert_eq!(body["path"], "count");
    assert!(
        body["error"].as_str().unwrap().contains("`count`"),
        "{body}"
    );
    let r = b.handle(call("echo", json!({}), &t)).await;
    let body = assert_error(&r, 400);
    assert!(body["error"].as_str().unwrap().contains("text"), "{body}");
}

#[tokio::test]
async fn status_400_unknown_method_has_its_code() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    let r = b.handle(call("drop_database", json!({}), &t)).await;
    let body = assert_error(&r, 400);
    assert_eq!(body["code"], "unknown_method");
    // Unknown beats the technical-token rule, so a gateway can tell
    // "not implemented" from "not allowed".
    let r = b.handle(call("drop_database", json!({}), TECH)).await;
    assert_eq!(assert_error(&r, 400)["code"], "unknown_method");
}

#[tokio::test]
async fn status_400_business_rule() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:write"]);
    let r = b.handle(call("business_rule", json!({"id": 3}), &t)).await;
    let body = assert_error(&r, 400);
    assert!(body["error"].as_str().unwrap().contains("archived"));
}

#[tokio::test]
async fn status_401_without_or_with_malformed_token() {
    let (_issuer, b) = setup().await;
    let r = b.handle(call_raw(r#"{"method":"list_tools"}"#, None)).await;
    assert!(
        assert_error(&r, 401)["error"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );
    let r = b
        .handle(
            Request::post(r#"{"method":"list_tools"}"#)
                .header("content-type", "application/json")
                .header("authorization", "Basic abc"),
        )
        .await;
    assert_error(&r, 401);
    let r = b.handle(call("list_tools", json!({}), "not-a-jwt")).await;
    assert_error(&r, 401);
}

#[tokio::test]
async fn every_broken_token_kind_gets_401() {
    let (issuer, b) = setup().await;
    for kind in BrokenToken::ALL {
        let t = issuer.broken(kind, AUD, "ana", &["mcp:notes:read"]);
        let r = b.handle(call("whoami", json!({}), &t)).await;
        let body = r.json_body();
        assert_eq!(r.status, 401, "{kind:?} was not refused: {body}");
        assert!(
            !body["error"].as_str().unwrap().contains(&t),
            "token echoed"
        );
    }
}

#[tokio::test]
async fn status_403_missing_scope_carries_required() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    let r = b.handle(call("delete_note", json!({"id": 7}), &t)).await;
    let body = assert_error(&r, 403);
    assert_eq!(body["required"], "mcp:notes:write");
}

#[tokio::test]
async fn status_403_acl_has_no_required() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "bob", &["mcp:notes:write"]);
    let r = b.handle(call("delete_note", json!({"id": 7}), &t)).await;
    let body = assert_error(&r, 403);
    assert!(body.get("required").is_none(), "{body}");
    assert_eq!(body["code"], "acl_denied");
}

#[tokio::test]
async fn status_404_not_found() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:write"]);
    let r = b.handle(call("delete_note", json!({"id": 8}), &t)).await;
    assert_error(&r, 404);
    let r = b
        .handle(call("read_resource", json!({"uri": "other://x"}), &t))
        .await;
    assert_error(&r, 404);
}

#[tokio::test]
async fn status_413_body_over_the_limit() {
    let issuer = TestIssuer::start().await.unwrap();
    let b = backend_with_limit(&issuer, 64);
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    let big = json!({"method": "echo", "params": {"text": "x".repeat(100)}}).to_string();
    let r = b.handle(call_raw(&big, Some(&t))).await;
    assert_eq!(assert_error(&r, 413)["code"], "payload_too_large");
    let r = b.handle(too_large()).await;
    assert_error(&r, 413);
}

#[tokio::test]
async fn status_500_hides_internals() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    let r = b.handle(call("failing", json!({"id": 1}), &t)).await;
    let body = assert_error(&r, 500);
    assert!(!body.to_string().contains("hunter2"), "{body}");
    let r = b.handle(call("panicking", json!({"id": 1}), &t)).await;
    let body = assert_error(&r, 500);
    assert!(!body.to_string().contains("deadbeef"), "{body}");
    // The backend still answers after a panic.
    let r = b.handle(call("echo", json!({"text": "a"}), &t)).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn output_schema_mismatch_is_500_in_debug() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    let r = b.handle(call("lying", json!({"id": 1}), &t)).await;
    if cfg!(debug_assertions) {
        assert_eq!(assert_error(&r, 500)["code"], "output_schema_mismatch");
    } else {
        assert_eq!(r.status, 200);
    }
}

#[tokio::test]
async fn output_schema_mismatch_names_the_path_and_keyword_never_the_value() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    let r = b.handle(call("leaky", json!({"id": 1}), &t)).await;
    if cfg!(debug_assertions) {
        // The text shown here is the text logged.
        let body = assert_error(&r, 500).to_string();
        assert!(!body.contains("secret-value-42"), "{body}");
        assert!(body.contains("/ok") && body.contains("`type`"), "{body}");
    }
}

#[tokio::test]
async fn transport_errors_are_json() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    let r = b
        .handle(Request::new(
            "GET",
            RequestBody::Complete(Default::default()),
        ))
        .await;
    assert_error(&r, 405);
    assert_eq!(r.allow, Some("POST"));
    let r = b.handle(call_raw("{not json", Some(&t))).await;
    assert_eq!(assert_error(&r, 400)["code"], "invalid_json");
    let r = b.handle(call_raw("", Some(&t))).await;
    assert_eq!(assert_error(&r, 400)["code"], "invalid_json");
    let r = b.handle(call_raw("[1,2]", Some(&t))).await;
    assert_eq!(assert_error(&r, 400)["code"], "invalid_request");
    let r = b
        .handle(call_raw(r#"{"method":"echo","params":[1]}"#, Some(&t)))
        .await;
    assert_eq!(assert_error(&r, 400)["code"], "invalid_params");
    let r = b
        .handle(
            Request::post(r#"{"method":"list_tools"}"#)
                .header("content-type", "text/plain")
                .header("authorization", format!("Bearer {t}")),
        )
        .await;
    assert_eq!(assert_error(&r, 400)["code"], "unsupported_media_type");
    // Absent params mean {}.
    let r = b.handle(call_raw(r#"{"method":"whoami"}"#, Some(&t))).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn technical_token_calls_discovery_only() {
    let (_issuer, b) = setup().await;
    for token in [TECH, TECH_OLD] {
        for method in [
            "list_tools",
            "list_prompts",
            "list_resource_templates",
            "get_snapshot",
        ] {
            let r = b.handle(call(method, json!({}), token)).await;
            assert_eq!(r.status, 200, "{method}: {}", r.json_body());
        }
    }
    let tools: Vec<String> = b.tools().into_iter().map(|t| t.name).collect();
    let mut refused: Vec<String> = [
        "get_help",
        "whoami",
        "get_prompt",
        "read_resource",
        "report_missing_capability",
        "list_tickets",
    ]
    .map(String::from)
    .to_vec();
    refused.extend(tools);
    for method in refused {
        let r = b
            .handle(call(&method, json!({"id": 7, "text": "x"}), TECH))
            .await;
        let body = assert_error(&r, 403);
        assert_eq!(body["code"], "technical_token_not_allowed", "{method}");
        assert!(body.get("required").is_none(), "{method}");
    }
    // A near-miss of the technical token is just an invalid token.
    let r = b
        .handle(call("list_tools", json!({}), &TECH.replace('0', "1")))
        .await;
    assert_error(&r, 401);
}

#[tokio::test]
async fn write_scope_implies_read_and_nothing_else() {
    let (issuer, b) = setup().await;
    let writer = user(&issuer, "ana", &["mcp:notes:write"]);
    let r = b.handle(call("echo", json!({"text": "a"}), &writer)).await;
    assert_eq!(r.status, 200);
    let other = user(&issuer, "ana", &["mcp:crm:write"]);
    let r = b.handle(call("echo", json!({"text": "a"}), &other)).await;
    assert_eq!(assert_error(&r, 403)["required"], "mcp:notes:read");
}

#[tokio::test]
async fn headers_never_override_the_token() {
    let (issuer, b) = setup().await;
    let t = issuer
        .token(AUD)
        .sub("bob")
        .email("bob@meridian.test")
        .scopes(["mcp:notes:read"])
        .mint();
    let mut req = call("whoami", json!({}), &t);
    for (h, v) in [
        ("X-Cortex-User-Id", "ana"),
        ("X-Cortex-User-Email", "ana@meridian.test"),
        ("X-Cortex-User-Role", "admin"),
        ("X-Cortex-Scopes", "mcp:notes:write"),
    ] {
        req.push_header(h, v);
    }
    let r = b.handle(req).await;
    let body = r.json_body();
    assert_eq!(body["sub"], "bob", "{body}");
    assert_eq!(body["email"], "bob@meridian.test");
    assert!(body.get("role").is_none());
    assert_eq!(body["scopes"], json!(["mcp:notes:read"]));
    assert_eq!(body["backend"], "notes");
    assert!(
        !body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "delete_note")
    );
    // And the spoofed write scope does not open a write tool.
    let mut req = call("delete_note", json!({"id": 7}), &t);
    req.push_header("X-Cortex-Scopes", "mcp:notes:write");
    assert_eq!(b.handle(req).await.status, 403);
}

#[tokio::test]
async fn get_help_all_one_and_unknown() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    let all = b.handle(call("get_help", json!({}), &t)).await.json_body();
    for topic in cortex_backend::TOPICS {
        assert!(all.get(topic).is_some(), "missing {topic}");
    }
    assert!(all["workflows"][0]["steps"].is_array());
    let one = b
        .handle(call("get_help", json!({"topic": "limits"}), &t))
        .await
        .json_body();
    assert_eq!(one["topic"], "limits");
    assert!(one.get("overview").is_none());
    let r = b
        .handle(call("get_help", json!({"topic": "pricing"}), &t))
        .await;
    let body = assert_error(&r, 400);
    assert_eq!(body["topics"].as_array().unwrap().len(), 6);
    // get_help is listed as a tool.
    assert!(
        b.tools()
            .iter()
            .any(|d| d.name == "get_help" && d.scope == "mcp:notes:read")
    );
}

#[tokio::test]
async fn prompts_resources_tickets_and_rich_results() {
    let (issuer, b) = setup().await;
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    let r = b
        .handle(call(
            "get_prompt",
            json!({"name": "summarise", "arguments": {"id": "7"}}),
            &t,
        ))
        .await;
    assert_eq!(
        r.json_body()["messages"][0]["content"]["text"],
        "Summarise note 7"
    );
    let r = b
        .handle(call("get_prompt", json!({"name": "summarise"}), &t))
        .await;
    assert_error(&r, 400);
    let r = b
        .handle(call("read_resource", json!({"uri": "notes://note/9"}), &t))
        .await;
    assert_eq!(r.json_body()["contents"][0]["text"], "note 9");
    let r = b
        .handle(call(
            "report_missing_capability",
            json!({"whatIWanted": "x", "userIntent": "y", "severity": "blocking"}),
            &t,
        ))
        .await;
    assert_eq!(r.json_body()["ticketId"], "T-1");
    let r = b
        .handle(call(
            "report_missing_capability",
            json!({"whatIWanted": "x", "userIntent": "y", "severity": "urgent"}),
            &t,
        ))
        .await;
    assert_error(&r, 400);
    let r = b.handle(call("chart", json!({"id": 1}), &t)).await;
    let body = r.json_body();
    assert_eq!(
        body["content"][1],
        json!({"type": "image", "data": "AQID", "mimeType": "image/png"})
    );
    let chart = b.tools().into_iter().find(|d| d.name == "chart").unwrap();
    assert_eq!(serde_json::to_value(chart.result_kind).unwrap(), "mcp");
}

#[tokio::test]
async fn verified_tokens_are_cached_until_expiry() {
    let issuer = TestIssuer::start().await.unwrap();
    let mut config = issuer.jwt_config(AUD);
    config.cache_capacity = 3;
    let v = cortex_backend::auth::JwtValidator::new(config).unwrap();
    let t = user(&issuer, "ana", &["mcp:notes:read"]);
    assert!(v.cached_for(&t).is_none());
    v.validate(&t).await.unwrap();
    assert!(v.cached_for(&t).is_some());
    for i in 0..10 {
        v.validate(&user(&issuer, &format!("u{i}"), &[]))
            .await
            .unwrap();
        assert!(v.cache_len() <= 3, "cache grew past its bound");
    }
    let expired = issuer.broken(BrokenToken::Expired, AUD, "ana", &[]);
    assert!(v.validate(&expired).await.is_err());
    assert!(v.cached_for(&expired).is_none());
}

#[test]
fn configuration_errors_name_the_variable() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_string())
        }
    };
    let e =
        cortex_backend::auth::config_from_env(env(&[("OAUTH_ISSUER", "https://id.example.com")]))
            .unwrap_err();
    assert_eq!(e.variable, "OAUTH_AUDIENCE");
    let e = cortex_backend::auth::config_from_env(env(&[
        ("OAUTH_ISSUER", "https://id.example.com"),
        ("OAUTH_AUDIENCE", "x"),
        ("OAUTH_ALGORITHMS", "HS256"),
    ]))
    .unwrap_err();
    assert_eq!(e.variable, "OAUTH_ALGORITHMS");
    let c = cortex_backend::auth::config_from_env(env(&[("CORTEX_TECHNICAL_TOKENS", "short")]))
        .unwrap();
    let e = cortex_backend::Auth::new(c).unwrap_err();
    assert_eq!(e.variable, "CORTEX_TECHNICAL_TOKENS");
    let c = cortex_backend::auth::config_from_env(env(&[
        ("OAUTH_ISSUER", "http://id.example.com"),
        ("OAUTH_AUDIENCE", "x"),
    ]))
    .unwrap();
    let e = cortex_backend::Auth::new(c).unwrap_err();
    assert_eq!(e.variable, "OAUTH_ISSUER");
}

#[tokio::test]
async fn static_keys_from_a_jwks_file() {
    let issuer = TestIssuer::start().await.unwrap();
    let jwks: serde_json::Value = reqwest::get(issuer.jwks_url())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = std::env::temp_dir().join(format!("cortex-jwks-{}.json", std::process::id()));
    std::fs::write(&path, jwks.to_string()).unwrap();
    let vars = [
        ("OAUTH_ISSUER", issuer.issuer().to_string()),
        ("OAUTH_AUDIENCE", AUD.to_string()),
        ("OAUTH_JWKS_FILE", path.display().to_string()),
    ];
    let config = cortex_backend::auth::config_from_env(|k| {
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let auth = cortex_backend::Auth::new(config).unwrap();
    verify_after_issuer_is_gone(issuer, &auth).await;
    std::fs::remove_file(path).ok();
}

/// Verifies a token with the static keys after the issuer's server is gone.
async fn verify_after_issuer_is_gone(issuer: TestIssuer, auth: &cortex_backend::Auth) {
    let token = user(&issuer, "ana", &["mcp:notes:read"]);
    let broken = issuer.broken(BrokenToken::UnknownKid, AUD, "ana", &[]);
    drop(issuer);
    let p = auth
        .authenticate(Some(&format!("Bearer {token}")))
        .await
        .unwrap();
    assert!(matches!(p, cortex_backend::auth::Principal::User(c) if c.sub == "ana"));
    assert!(
        auth.authenticate(Some(&format!("Bearer {broken}")))
            .await
            .is_err()
    );
}
