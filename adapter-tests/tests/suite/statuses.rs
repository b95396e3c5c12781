//! Every status path of contract.md §6, through both adapters.

use serde_json::json;

use crate::{
    backend::{READ, WRITE},
    fixture::{Call, send, token},
};

#[tokio::test]
async fn a_tool_call_answers_200_with_its_result() {
    let reply = send(Call::method(
        &token(&[READ]),
        "echo",
        json!({"text": "hi", "repeat": 2}),
    ))
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({"text": "hihi", "caller": "ana"}));
}

#[tokio::test]
async fn absent_params_mean_an_empty_object() {
    let reply = send(Call::post(
        &token(&[READ]),
        &json!({"method": "list_tools"}),
    ))
    .await;
    assert_eq!(reply.status, 200);
    let names: Vec<&str> = reply.body["tools"]
        .as_array()
        .expect("a tool list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"get_help"),
        "{names:?}"
    );
}

#[tokio::test]
async fn bad_arguments_answer_400_invalid_params() {
    let reply = send(Call::method(&token(&[READ]), "echo", json!({"text": 5}))).await;
    reply.assert_error(400, "invalid_params");
    let reply = send(Call::method(&token(&[READ]), "echo", json!({}))).await;
    reply.assert_error(400, "invalid_params");
}

#[tokio::test]
async fn an_unknown_method_answers_400_unknown_method() {
    let reply = send(Call::method(&token(&[READ]), "no_such_tool", json!({}))).await;
    reply.assert_error(400, "unknown_method");
}

#[tokio::test]
async fn a_business_rule_answers_400() {
    let reply = send(Call::method(
        &token(&[WRITE]),
        "withdraw",
        json!({"amount": 101}),
    ))
    .await;
    reply.assert_error(400, "invalid_params");
    assert!(reply.error().contains("at most 100"), "{}", reply.body);
    let ok = send(Call::method(
        &token(&[WRITE]),
        "withdraw",
        json!({"amount": 3}),
    ))
    .await;
    assert_eq!((ok.status, ok.body), (200, json!({"withdrawn": 3})));
}

#[tokio::test]
async fn a_missing_scope_answers_403_with_required() {
    let reply = send(Call::method(
        &token(&["mcp:other:read"]),
        "echo",
        json!({"text": "x"}),
    ))
    .await;
    reply.assert_error(403, "missing_scope");
    assert_eq!(reply.body["required"], json!(READ));
}

#[tokio::test]
async fn write_implies_read_of_the_same_domain() {
    let reply = send(Call::method(&token(&[WRITE]), "echo", json!({"text": "x"}))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn an_acl_refusal_answers_403_without_required() {
    let reply = send(Call::method(&token(&[WRITE]), "purge", json!({}))).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.get("required").is_none(), "{}", reply.body);
    assert!(reply.error().contains("librarian"), "{}", reply.body);
}

#[tokio::test]
async fn a_missing_record_answers_404() {
    let reply = send(Call::method(&token(&[READ]), "find", json!({"id": "nope"}))).await;
    reply.assert_error(404, "not_found");
    let found = send(Call::method(
        &token(&[READ]),
        "find",
        json!({"id": "known"}),
    ))
    .await;
    assert_eq!(found.status, 200);
}

#[tokio::test]
async fn a_panicking_handler_answers_500_without_internals() {
    let reply = send(Call::method(&token(&[READ]), "explode", json!({}))).await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(!reply.error().contains("secret"), "{}", reply.body);
    // The server survived.
    let after = send(Call::method(
        &token(&[READ]),
        "echo",
        json!({"text": "still here"}),
    ))
    .await;
    assert_eq!(after.status, 200);
}

#[tokio::test]
async fn an_internal_error_answers_500_without_internals() {
    let reply = send(Call::method(&token(&[READ]), "fail", json!({}))).await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(!reply.error().contains("password"), "{}", reply.body);
}

#[tokio::test]
async fn the_other_contract_methods_answer_identically() {
    let t = token(&[READ]);
    for (method, params) in [
        ("whoami", json!({})),
        ("get_help", json!({})),
        ("get_help", json!({"topic": "overview"})),
        ("get_snapshot", json!({})),
        ("list_prompts", json!({})),
        ("get_prompt", json!({"name": "summarise"})),
        ("list_resource_templates", json!({})),
        ("read_resource", json!({"uri": "shelf://item/7"})),
    ] {
        let reply = send(Call::method(&t, method, params)).await;
        assert_eq!(reply.status, 200, "{method}: {}", reply.body);
    }
    let unknown_topic = send(Call::method(&t, "get_help", json!({"topic": "nope"}))).await;
    assert_eq!(unknown_topic.status, 400, "{}", unknown_topic.body);
}
