//! What the frameworks would otherwise decide: methods, content types,
//! sizes and malformed bodies all come back as contract JSON.

use serde_json::json;

use crate::{
    backend::{BODY_LIMIT, READ},
    fixture::{Call, send, token},
};

#[tokio::test]
async fn other_http_methods_answer_405_json_with_allow() {
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let mut call = Call::method(&token(&[READ]), "list_tools", json!({}));
        call.method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let reply = send(call).await;
        reply.assert_error(405, "method_not_allowed");
        assert_eq!(reply.allow.as_deref(), Some("POST"), "{method}");
    }
}

#[tokio::test]
async fn a_get_without_body_or_token_answers_405() {
    let mut call = Call::raw("unused", Vec::new());
    call.method = reqwest::Method::GET;
    call.authorization = None;
    call.content_type = None;
    let reply = send(call).await;
    reply.assert_error(405, "method_not_allowed");
    assert_eq!(reply.allow.as_deref(), Some("POST"));
}

#[tokio::test]
async fn a_wrong_content_type_answers_400_json() {
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut call = Call::method(&token(&[READ]), "list_tools", json!({}));
        call.content_type = content_type;
        send(call).await.assert_error(400, "unsupported_media_type");
    }
}

#[tokio::test]
async fn a_json_content_type_with_parameters_is_accepted() {
    let mut call = Call::method(&token(&[READ]), "echo", json!({"text": "x"}));
    call.content_type = Some("application/json; charset=utf-8");
    assert_eq!(send(call).await.status, 200);
}

#[tokio::test]
async fn an_empty_body_answers_400() {
    send(Call::raw(&token(&[READ]), Vec::new()))
        .await
        .assert_error(400, "invalid_json");
}

#[tokio::test]
async fn a_body_that_is_not_json_answers_400() {
    send(Call::raw(&token(&[READ]), "{\"method\": "))
        .await
        .assert_error(400, "invalid_json");
}

#[tokio::test]
async fn a_body_that_is_not_an_object_answers_400() {
    for body in ["[1, 2]", "\"list_tools\"", "42", "null"] {
        let reply = send(Call::raw(&token(&[READ]), body)).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert!(!reply.error().is_empty());
    }
}

#[tokio::test]
async fn params_that_are_not_an_object_answer_400() {
    for params in [json!([1]), json!("x"), json!(3)] {
        send(Call::method(&token(&[READ]), "echo", params))
            .await
            .assert_error(400, "invalid_params");
    }
}

fn blob_call(len: usize) -> Call {
    let prefix = br#"{"method":"measure","params":{"blob":""#;
    let suffix = br#""}}"#;
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(prefix);
    body.resize(len - suffix.len(), b'a');
    body.extend_from_slice(suffix);
    Call::raw(&token(&[READ]), body)
}

#[tokio::test]
async fn a_body_up_to_the_backend_limit_is_accepted() {
    // Larger than both frameworks' defaults (axum 2 MB, actix 256 KiB).
    let reply = send(blob_call(BODY_LIMIT)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let overhead = r#"{"method":"measure","params":{"blob":""}}"#.len();
    assert_eq!(reply.body, json!({"len": BODY_LIMIT - overhead}));
}

#[tokio::test]
async fn a_body_over_the_backend_limit_answers_413_json() {
    send(blob_call(BODY_LIMIT + 1))
        .await
        .assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn an_unauthenticated_oversized_body_answers_413() {
    let mut call = blob_call(BODY_LIMIT + 4096);
    call.authorization = None;
    send(call).await.assert_error(413, "payload_too_large");
}
